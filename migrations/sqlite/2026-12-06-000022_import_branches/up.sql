-- The XA branch in which an atomic import writes part of its new customers on a
-- second connection (MySQL only: SQLite has one writer and no branches, and keeps
-- the table so that both schemas match). See the MySQL migration.
CREATE TABLE import_branches (
    xid TEXT NOT NULL PRIMARY KEY,
    started_at TIMESTAMP NOT NULL
);
