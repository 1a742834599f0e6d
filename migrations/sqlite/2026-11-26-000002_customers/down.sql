DROP TABLE category_members;
DROP TABLE assignment_history;
DROP INDEX ix_customers_created;
DROP INDEX ix_customers_name;
