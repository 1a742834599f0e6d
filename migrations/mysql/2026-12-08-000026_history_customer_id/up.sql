-- A history entry also carries the id of the customer it was written for, so that a
-- period's moves can be set beside its sales (keyed by customer id) from the period
-- index alone, without finding each customer by code. No foreign key: history
-- outlives customers. Entries written before this carry the id of the customer now
-- holding their code; those of customers deleted before it carry none.
ALTER TABLE assignment_history
    ADD COLUMN customer_id BIGINT NULL,
    DROP INDEX ix_assignment_history_period,
    ADD INDEX ix_assignment_history_period (scheme_code, at, from_category, to_category, direction, source, customer_code, customer_id);

UPDATE assignment_history h JOIN customers c ON c.code = h.customer_code SET h.customer_id = c.id;
