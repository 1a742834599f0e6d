DROP INDEX ix_transactions_occurred;
DROP TABLE sales_totals_anchor;
DROP TABLE sales_totals;
