-- Changes of a customer's category asked for now and applied at `effective_at`. At
-- most one per customer and scheme is `pending` (a newer one replaces it); the others
-- stay as a record of what was applied, cancelled or failed. `customers.pending`
-- holds the customer's pending changes as JSON, as `classification` holds its
-- assignments, so that reading a customer stays one row.
CREATE TABLE pending_changes (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL,
    customer_code TEXT NOT NULL,
    scheme_code TEXT NOT NULL,
    category_code TEXT NOT NULL,
    locked BOOLEAN NULL,
    attributes TEXT NULL,
    effective_at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NULL,
    status TEXT NOT NULL,
    failure TEXT NULL,
    settled_at TIMESTAMP NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE INDEX ix_pending_changes_due ON pending_changes (status, effective_at, id);
CREATE INDEX ix_pending_changes_customer ON pending_changes (customer_id, scheme_code, status);
CREATE INDEX ix_pending_changes_scheme ON pending_changes (scheme_code, effective_at, id);
CREATE INDEX ix_pending_changes_effective ON pending_changes (effective_at, id);

ALTER TABLE customers ADD COLUMN pending TEXT NULL;
