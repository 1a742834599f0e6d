-- Sales summed per customer up to an anchor (see the MySQL migration).
CREATE TABLE sales_totals (
    customer_id INTEGER NOT NULL PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    spend_cents BIGINT NOT NULL,
    orders BIGINT NOT NULL,
    earlier_spend_cents BIGINT NOT NULL,
    earlier_orders BIGINT NOT NULL
);

CREATE TABLE sales_totals_anchor (
    id INTEGER NOT NULL PRIMARY KEY,
    anchored_at TIMESTAMP NOT NULL
);
INSERT INTO sales_totals_anchor (id, anchored_at) VALUES (1, '1970-01-01 00:00:00');

CREATE INDEX ix_transactions_occurred ON transactions (occurred_at, customer_id, amount_cents);
