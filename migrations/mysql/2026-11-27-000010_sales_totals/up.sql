-- Each customer's sales summed up to one moment, the anchor, and up to 12 months
-- before it: a report's measures read one row per customer and correct it by the
-- transactions between the anchor and the moment it describes (found by the
-- occurred_at index), instead of reading every transaction. The service moves the
-- anchor to the start of the current UTC day as days pass; it starts before any
-- possible sale, with nothing summed, so the first move fills the table.
CREATE TABLE sales_totals (
    customer_id BIGINT NOT NULL PRIMARY KEY,
    -- amounts (cents) and orders (positive amounts) at or before the anchor
    spend_cents BIGINT NOT NULL,
    orders BIGINT NOT NULL,
    -- the same, at or before 12 calendar months before the anchor
    earlier_spend_cents BIGINT NOT NULL,
    earlier_orders BIGINT NOT NULL,
    CONSTRAINT fk_sales_totals_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sales_totals_anchor (
    id INT NOT NULL PRIMARY KEY,
    anchored_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO sales_totals_anchor (id, anchored_at) VALUES (1, '1970-01-01 00:00:00');

CREATE INDEX ix_transactions_occurred ON transactions (occurred_at, customer_id, amount_cents);
