CREATE TABLE run_changes (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES classification_runs (id) ON DELETE CASCADE,
    customer_code TEXT NOT NULL,
    from_category TEXT NULL,
    to_category TEXT NOT NULL,
    rule_id BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NULL
);
CREATE INDEX ix_run_changes_run ON run_changes (run_id, id);

INSERT INTO run_changes (run_id, customer_code, from_category, to_category, rule_id, outcome, detail)
SELECT b.run_id, json_extract(c.value, '$.customer'), json_extract(c.value, '$.from'), json_extract(c.value, '$.to'),
       json_extract(c.value, '$.rule_id'), json_extract(c.value, '$.outcome'), json_extract(c.value, '$.detail')
FROM run_change_blocks b, json_each(b.changes) c
ORDER BY b.id, c.key;

DROP TABLE run_change_blocks;
