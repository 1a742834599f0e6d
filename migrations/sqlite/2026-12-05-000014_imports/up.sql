-- Imports of the customer archive: each one's options, progress and report, so that
-- any replica answers GET /imports/{id}.
CREATE TABLE imports (
    id TEXT NOT NULL PRIMARY KEY,
    status TEXT NOT NULL,
    format TEXT NOT NULL,
    mode TEXT NOT NULL,
    atomic BOOLEAN NOT NULL,
    dry_run BOOLEAN NOT NULL,
    actor TEXT NOT NULL,
    rows_total BIGINT NULL,
    rows_done BIGINT NOT NULL,
    report TEXT NULL,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NULL
);
CREATE INDEX ix_imports_started ON imports (started_at);
