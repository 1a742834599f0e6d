-- An atomic import writes on one connection in one transaction: the XA branch of its
-- second writer, and the table that decided a branch left prepared, are gone.
DROP TABLE import_branches;
