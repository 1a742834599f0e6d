-- Report counts, deleted customers and the history index (see the MySQL migration).
CREATE TABLE category_counts (
    scheme_id INTEGER NOT NULL,
    category_code TEXT NOT NULL,
    shard INTEGER NOT NULL,
    customers INTEGER NOT NULL,
    PRIMARY KEY (scheme_id, category_code, shard)
);

INSERT INTO category_counts (scheme_id, category_code, shard, customers)
SELECT scheme_id, category_code, customer_id % 16, COUNT(*) FROM customer_categories GROUP BY scheme_id, category_code, customer_id % 16;

CREATE TABLE customer_counts (
    shard INTEGER NOT NULL PRIMARY KEY,
    customers INTEGER NOT NULL
);

INSERT INTO customer_counts (shard, customers) SELECT id % 16, COUNT(*) FROM customers GROUP BY id % 16;

CREATE TABLE deleted_customers (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    customer_code TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    deleted_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_deleted_customers_deleted ON deleted_customers (deleted_at);

CREATE INDEX ix_assignment_history_scheme_customer ON assignment_history (scheme_code, customer_code, at, id);
