-- A period's moves carry whose they were, so that each customer's first and last
-- move of a short period (transitions, net basis; where customers stood as of a day)
-- is read from the period's range of the index alone, without a row lookup each.
ALTER TABLE assignment_history
    DROP INDEX ix_assignment_history_period,
    ADD INDEX ix_assignment_history_period (scheme_code, at, from_category, to_category, direction, source, customer_code);
