-- A run's changes in blocks of up to 1,000, each a JSON array in run order: one row
-- written per block instead of one per customer, which a run that moves most of the
-- archive otherwise pays for as much as for a membership row.
CREATE TABLE run_change_blocks (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    run_id BIGINT NOT NULL,
    changes MEDIUMTEXT NOT NULL,
    KEY ix_run_change_blocks_run (run_id, id),
    CONSTRAINT fk_run_change_blocks_run FOREIGN KEY (run_id) REFERENCES classification_runs (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

SET SESSION group_concat_max_len = 16777215;
INSERT INTO run_change_blocks (run_id, changes)
SELECT run_id,
       CONCAT('[', GROUP_CONCAT(JSON_OBJECT('customer', customer_code, 'from', from_category, 'to', to_category, 'rule_id', rule_id,
                                            'outcome', outcome, 'detail', detail) ORDER BY id SEPARATOR ','), ']')
FROM run_changes
GROUP BY run_id, id DIV 1000
ORDER BY MIN(id);

DROP TABLE run_changes;
