-- Customers merged into another: their code answers 404 customer_merged with the
-- survivor's code, and their history stays readable under it.
CREATE TABLE merged_customers (
    customer_code VARCHAR(40) NOT NULL PRIMARY KEY,
    merged_into VARCHAR(40) NOT NULL,
    merged_at DATETIME(6) NOT NULL,
    KEY ix_merged_customers_into (merged_into)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
