-- Sales facts pushed by other ERP services. Amounts are integer cents (exact);
-- external_id makes ingestion idempotent; batch_id tells a request which rows it wrote.
CREATE TABLE transactions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    external_id VARCHAR(100) NOT NULL,
    customer_id BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL,
    occurred_at DATETIME(6) NOT NULL,
    received_at DATETIME(6) NOT NULL,
    batch_id CHAR(36) NOT NULL,
    UNIQUE KEY uq_transactions_external_id (external_id),
    KEY ix_transactions_customer (customer_id, occurred_at, amount_cents),
    CONSTRAINT fk_transactions_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Classification rules of a scheme; `condition` is the validated JSON tree.
CREATE TABLE rules (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    scheme_id BIGINT NOT NULL,
    name VARCHAR(200) NOT NULL,
    target_category VARCHAR(30) NOT NULL,
    priority INT NOT NULL,
    enabled BOOLEAN NOT NULL,
    rule_condition TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY ix_rules_scheme (scheme_id, priority, id),
    CONSTRAINT fk_rules_scheme FOREIGN KEY (scheme_id) REFERENCES schemes (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per classification run. `running_scheme_id` is set while the run is in
-- progress: its unique index admits one running run per scheme.
CREATE TABLE classification_runs (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    scheme_id BIGINT NOT NULL,
    running_scheme_id BIGINT NULL,
    status VARCHAR(16) NOT NULL,
    dry_run BOOLEAN NOT NULL,
    trigger_source VARCHAR(16) NOT NULL,
    actor VARCHAR(100) NOT NULL,
    as_of DATETIME(6) NOT NULL,
    -- evaluated, changed, unchanged, skipped_locked, skipped_inactive, rejected and
    -- the from → to transition counts, as JSON, rewritten after every batch.
    totals TEXT NOT NULL,
    error TEXT NULL,
    started_at DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NULL,
    UNIQUE KEY uq_classification_runs_running (running_scheme_id),
    KEY ix_classification_runs_scheme (scheme_id, id),
    CONSTRAINT fk_classification_runs_scheme FOREIGN KEY (scheme_id) REFERENCES schemes (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- What a run changed (or, dry, would change), and whom it could not move.
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
