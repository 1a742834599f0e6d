-- An atomic import writes on one connection in one transaction (see the MySQL migration).
DROP TABLE import_branches;
