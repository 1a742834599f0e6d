-- Keyset pagination by name and by creation time.
CREATE INDEX ix_customers_name ON customers (name, id);
CREATE INDEX ix_customers_created ON customers (created_at, id);

-- Every change of a customer's category in a scheme. No foreign keys: history outlives
-- customers, categories and schemes, and is read by customer code.
CREATE TABLE assignment_history (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_code VARCHAR(40) NOT NULL,
    scheme_code VARCHAR(32) NOT NULL,
    from_category VARCHAR(30) NULL,
    to_category VARCHAR(30) NULL,
    at DATETIME(6) NOT NULL,
    actor VARCHAR(100) NOT NULL,
    source VARCHAR(16) NOT NULL,
    reason VARCHAR(500) NULL,
    rule_id BIGINT NULL,
    run_id BIGINT NULL,
    KEY ix_assignment_history_customer (customer_code, at, id),
    KEY ix_assignment_history_scheme_at (scheme_code, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A customer is a member of its category and of every ancestor, so that a subtree
-- filter is one index equality that yields customers already ordered by code.
CREATE TABLE category_members (
    customer_id BIGINT NOT NULL,
    scheme_id BIGINT NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    customer_code VARCHAR(40) NOT NULL,
    PRIMARY KEY (customer_id, scheme_id, category_code),
    KEY ix_category_members_category (scheme_id, category_code, customer_code),
    CONSTRAINT fk_category_members_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
