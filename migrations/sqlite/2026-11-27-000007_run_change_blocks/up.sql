-- A run's changes in blocks of up to 1,000, each a JSON array in run order (see the
-- MySQL migration).
CREATE TABLE run_change_blocks (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES classification_runs (id) ON DELETE CASCADE,
    changes TEXT NOT NULL
);
CREATE INDEX ix_run_change_blocks_run ON run_change_blocks (run_id, id);

INSERT INTO run_change_blocks (run_id, changes)
SELECT run_id, json_group_array(json_object('customer', customer_code, 'from', from_category, 'to', to_category, 'rule_id', rule_id,
                                            'outcome', outcome, 'detail', detail))
FROM (SELECT * FROM run_changes ORDER BY id)
GROUP BY run_id, id / 1000
ORDER BY MIN(id);

DROP TABLE run_changes;
