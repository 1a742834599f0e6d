DROP INDEX ix_assignment_history_period;
CREATE INDEX ix_assignment_history_period ON assignment_history (scheme_code, at, from_category, to_category, direction, source, customer_code);
ALTER TABLE assignment_history DROP COLUMN customer_id;
