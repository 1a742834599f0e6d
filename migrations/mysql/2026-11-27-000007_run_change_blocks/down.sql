CREATE TABLE run_changes (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    run_id BIGINT NOT NULL,
    customer_code VARCHAR(40) NOT NULL,
    from_category VARCHAR(30) NULL,
    to_category VARCHAR(30) NOT NULL,
    rule_id BIGINT NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    detail VARCHAR(1000) NULL,
    KEY ix_run_changes_run (run_id, id),
    CONSTRAINT fk_run_changes_run FOREIGN KEY (run_id) REFERENCES classification_runs (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO run_changes (run_id, customer_code, from_category, to_category, rule_id, outcome, detail)
SELECT b.run_id, c.customer, c.from_category, c.to_category, c.rule_id, c.outcome, c.detail
FROM run_change_blocks b,
     JSON_TABLE(b.changes, '$[*]' COLUMNS (
         position FOR ORDINALITY,
         customer VARCHAR(40) PATH '$.customer',
         from_category VARCHAR(30) PATH '$.from',
         to_category VARCHAR(30) PATH '$.to',
         rule_id BIGINT PATH '$.rule_id',
         outcome VARCHAR(16) PATH '$.outcome',
         detail VARCHAR(1000) PATH '$.detail')) c
ORDER BY b.id, c.position;

DROP TABLE run_change_blocks;
