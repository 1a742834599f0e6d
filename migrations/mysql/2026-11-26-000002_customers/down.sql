DROP TABLE category_members;
DROP TABLE assignment_history;
DROP INDEX ix_customers_created ON customers;
DROP INDEX ix_customers_name ON customers;
