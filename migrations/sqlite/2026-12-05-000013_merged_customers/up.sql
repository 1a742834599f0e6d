-- Customers merged into another: their code answers 404 customer_merged with the
-- survivor's code, and their history stays readable under it.
CREATE TABLE merged_customers (
    customer_code TEXT NOT NULL PRIMARY KEY,
    merged_into TEXT NOT NULL,
    merged_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_merged_customers_into ON merged_customers (merged_into);
