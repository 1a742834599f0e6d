-- Changes of a customer's category asked for now and applied at `effective_at`. At
-- most one per customer and scheme is `pending` (a newer one replaces it); the others
-- stay as a record of what was applied, cancelled or failed. `customers.pending`
-- holds the customer's pending changes as JSON, as `classification` holds its
-- assignments, so that reading a customer stays one row.
CREATE TABLE pending_changes (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    customer_code VARCHAR(40) NOT NULL,
    scheme_code VARCHAR(32) NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    locked BOOLEAN NULL,
    attributes TEXT NULL,
    effective_at DATETIME(6) NOT NULL,
    actor VARCHAR(100) NOT NULL,
    reason VARCHAR(500) NULL,
    status VARCHAR(16) NOT NULL,
    failure VARCHAR(1000) NULL,
    settled_at DATETIME(6) NULL,
    version BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY ix_pending_changes_due (status, effective_at, id),
    KEY ix_pending_changes_customer (customer_id, scheme_code, status),
    KEY ix_pending_changes_scheme (scheme_code, effective_at, id),
    KEY ix_pending_changes_effective (effective_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE customers ADD COLUMN pending TEXT NULL;
