ALTER TABLE sales_totals DROP COLUMN last_order_at;
ALTER TABLE rules DROP COLUMN population;
