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

-- Customers per pair of categories in two schemes (the smaller scheme id first):
-- what a cross-tab of two schemes, or a distribution filtered by one category of
-- another scheme, reads.
CREATE TABLE category_pair_counts (
    scheme_id BIGINT NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    other_scheme_id BIGINT NOT NULL,
    other_code VARCHAR(30) NOT NULL,
    shard SMALLINT NOT NULL,
    customers BIGINT NOT NULL,
    PRIMARY KEY (scheme_id, category_code, other_scheme_id, other_code, shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO category_pair_counts (scheme_id, category_code, other_scheme_id, other_code, shard, customers)
SELECT a.scheme_id, a.category_code, b.scheme_id, b.category_code, a.customer_id % 16, COUNT(*) FROM customer_categories a
JOIN customer_categories b ON b.customer_id = a.customer_id AND b.scheme_id > a.scheme_id
GROUP BY a.scheme_id, a.category_code, b.scheme_id, b.category_code, a.customer_id % 16;

-- History read by the reports without touching its rows: a period's moves in time
-- order (transitions, moves basis), and each customer's moves in order (its first and
-- last move of a period: transitions, net basis, and where it stood as of a day).
DROP INDEX ix_assignment_history_scheme_at ON assignment_history;
CREATE INDEX ix_assignment_history_period ON assignment_history (scheme_code, at, from_category, to_category, direction, source);
CREATE INDEX ix_assignment_history_journeys ON assignment_history (scheme_code, customer_code, at, id, from_category, to_category, direction, source);
