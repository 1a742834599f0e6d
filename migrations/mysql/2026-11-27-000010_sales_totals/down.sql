DROP INDEX ix_transactions_occurred ON transactions;
DROP TABLE sales_totals_anchor;
DROP TABLE sales_totals;
