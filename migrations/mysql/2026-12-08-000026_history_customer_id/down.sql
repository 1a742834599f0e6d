ALTER TABLE assignment_history
    DROP INDEX ix_assignment_history_period,
    ADD INDEX ix_assignment_history_period (scheme_code, at, from_category, to_category, direction, source, customer_code),
    DROP COLUMN customer_id;
