-- The XA branch in which an atomic import writes part of its new customers on a
-- second connection. The import's own transaction inserts the row when it begins, so
-- the row exists once that transaction commits and is locked by it until then: it
-- is the decision for a branch found prepared and left behind (commit when the row is
-- there, roll back when it is not). SQLite has one writer and no branches.
CREATE TABLE import_branches (
    xid VARCHAR(64) NOT NULL PRIMARY KEY,
    started_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
