-- Relative segmentation (see the MySQL migration).
ALTER TABLE rules ADD COLUMN population TEXT NULL;

ALTER TABLE sales_totals ADD COLUMN last_order_at TIMESTAMP NULL;
UPDATE sales_totals SET last_order_at = (
    SELECT MAX(t.occurred_at) FROM transactions t
    WHERE t.customer_id = sales_totals.customer_id AND t.amount_cents > 0
      AND t.occurred_at <= (SELECT a.anchored_at FROM sales_totals_anchor a WHERE a.id = 1)
);
