CREATE INDEX ix_customers_name ON customers (name, id);
CREATE INDEX ix_customers_created ON customers (created_at, id);

CREATE TABLE assignment_history (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    customer_code TEXT NOT NULL,
    scheme_code TEXT NOT NULL,
    from_category TEXT NULL,
    to_category TEXT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NULL,
    rule_id BIGINT NULL,
    run_id BIGINT NULL
);
CREATE INDEX ix_assignment_history_customer ON assignment_history (customer_code, at, id);
CREATE INDEX ix_assignment_history_scheme_at ON assignment_history (scheme_code, at);

CREATE TABLE category_members (
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    scheme_id BIGINT NOT NULL,
    category_code TEXT NOT NULL,
    customer_code TEXT NOT NULL,
    PRIMARY KEY (customer_id, scheme_id, category_code)
);
CREATE INDEX ix_category_members_category ON category_members (scheme_id, category_code, customer_code);
