CREATE TABLE import_branches (
    xid VARCHAR(64) NOT NULL PRIMARY KEY,
    started_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
