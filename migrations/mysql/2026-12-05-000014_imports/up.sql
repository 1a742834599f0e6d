-- Imports of the customer archive: each one's options, progress and report, so that
-- any replica answers GET /imports/{id}.
CREATE TABLE imports (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    status VARCHAR(16) NOT NULL,
    format VARCHAR(8) NOT NULL,
    mode VARCHAR(8) NOT NULL,
    atomic BOOLEAN NOT NULL,
    dry_run BOOLEAN NOT NULL,
    actor VARCHAR(100) NOT NULL,
    rows_total BIGINT NULL,
    rows_done BIGINT NOT NULL,
    report MEDIUMTEXT NULL,
    started_at DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NULL,
    KEY ix_imports_started (started_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
