DROP INDEX ix_assignment_history_journeys ON assignment_history;
DROP INDEX ix_assignment_history_period ON assignment_history;
CREATE INDEX ix_assignment_history_scheme_at ON assignment_history (scheme_code, at);
DROP TABLE category_pair_counts;
DROP TABLE deleted_customers;
DROP TABLE customer_counts;
DROP TABLE category_counts;
