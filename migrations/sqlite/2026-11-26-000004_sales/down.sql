DROP TABLE run_changes;
DROP TABLE classification_runs;
DROP TABLE rules;
DROP TABLE transactions;
