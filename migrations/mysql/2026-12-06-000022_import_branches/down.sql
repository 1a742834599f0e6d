DROP TABLE import_branches;
