-- Counts for the distribution report and the category tree, kept in the same
-- transactions as the assignments. Each count is spread over 16 shard rows (by
-- customer id), summed when read, so that concurrent assignments to one category
-- seldom wait on the same row.
CREATE TABLE category_counts (
    scheme_id BIGINT NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    shard SMALLINT NOT NULL,
    customers BIGINT NOT NULL,
    PRIMARY KEY (scheme_id, category_code, shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO category_counts (scheme_id, category_code, shard, customers)
SELECT scheme_id, category_code, customer_id % 16, COUNT(*) FROM customer_categories GROUP BY scheme_id, category_code, customer_id % 16;

-- The number of customers, sharded the same way: the population of an unfiltered report.
CREATE TABLE customer_counts (
    shard SMALLINT NOT NULL PRIMARY KEY,
    customers BIGINT NOT NULL
) ENGINE = InnoDB;

INSERT INTO customer_counts (shard, customers) SELECT id % 16, COUNT(*) FROM customers GROUP BY id % 16;

-- Customers that were deleted, with their lifetime: an `as_of` report counts them
-- where they stood. Customers deleted before this migration are unknown.
CREATE TABLE deleted_customers (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_code VARCHAR(40) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    deleted_at DATETIME(6) NOT NULL,
    KEY ix_deleted_customers_deleted (deleted_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The first move of each customer after a moment, per scheme: how `as_of` and the
-- transitions report find where a customer stood.
CREATE INDEX ix_assignment_history_scheme_customer ON assignment_history (scheme_code, customer_code, at, id);
