-- Relative segmentation. A rule may rank its relative fields (percentile, cumulative
-- share, RFM scores) within a category's subtree, stored as SCHEME:CODE.
ALTER TABLE rules ADD COLUMN population VARCHAR(200) NULL;

-- The last order (a positive amount) at or before the anchor: RFM recency ranks the
-- population's customers by the days since, from one row per customer.
ALTER TABLE sales_totals ADD COLUMN last_order_at DATETIME(6) NULL;
UPDATE sales_totals SET last_order_at = (
    SELECT MAX(t.occurred_at) FROM transactions t
    WHERE t.customer_id = sales_totals.customer_id AND t.amount_cents > 0
      AND t.occurred_at <= (SELECT a.anchored_at FROM sales_totals_anchor a WHERE a.id = 1)
);
