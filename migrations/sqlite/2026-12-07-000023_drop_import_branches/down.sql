CREATE TABLE import_branches (
    xid TEXT NOT NULL PRIMARY KEY,
    started_at TIMESTAMP NOT NULL
);
