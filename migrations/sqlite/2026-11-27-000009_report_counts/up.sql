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

CREATE TABLE category_pair_counts (
    scheme_id INTEGER NOT NULL,
    category_code TEXT NOT NULL,
    other_scheme_id INTEGER NOT NULL,
    other_code TEXT NOT NULL,
    shard INTEGER NOT NULL,
    customers INTEGER NOT NULL,
    PRIMARY KEY (scheme_id, category_code, other_scheme_id, other_code, shard)
);

INSERT INTO category_pair_counts (scheme_id, category_code, other_scheme_id, other_code, shard, customers)
SELECT a.scheme_id, a.category_code, b.scheme_id, b.category_code, a.customer_id % 16, COUNT(*) FROM customer_categories a
JOIN customer_categories b ON b.customer_id = a.customer_id AND b.scheme_id > a.scheme_id
GROUP BY a.scheme_id, a.category_code, b.scheme_id, b.category_code, a.customer_id % 16;

DROP INDEX ix_assignment_history_scheme_at;
CREATE INDEX ix_assignment_history_period ON assignment_history (scheme_code, at, from_category, to_category, direction, source);
CREATE INDEX ix_assignment_history_journeys ON assignment_history (scheme_code, customer_code, at, id, from_category, to_category, direction, source);
