CREATE TABLE transactions (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    external_id TEXT NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    amount_cents BIGINT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    batch_id TEXT NOT NULL
);
CREATE UNIQUE INDEX uq_transactions_external_id ON transactions (external_id);
CREATE INDEX ix_transactions_customer ON transactions (customer_id, occurred_at, amount_cents);

CREATE TABLE rules (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    scheme_id BIGINT NOT NULL REFERENCES schemes (id),
    name TEXT NOT NULL,
    target_category TEXT NOT NULL,
    priority INTEGER NOT NULL,
    enabled BOOLEAN NOT NULL,
    rule_condition TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_rules_scheme ON rules (scheme_id, priority, id);

CREATE TABLE classification_runs (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    scheme_id BIGINT NOT NULL REFERENCES schemes (id),
    running_scheme_id BIGINT NULL,
    status TEXT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    trigger_source TEXT NOT NULL,
    actor TEXT NOT NULL,
    as_of TIMESTAMP NOT NULL,
    -- evaluated, changed, unchanged, skipped_locked, skipped_inactive, rejected and
    -- the from → to transition counts, as JSON, rewritten after every batch.
    totals TEXT NOT NULL,
    error TEXT NULL,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NULL
);
CREATE UNIQUE INDEX uq_classification_runs_running ON classification_runs (running_scheme_id);
CREATE INDEX ix_classification_runs_scheme ON classification_runs (scheme_id, id);

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
