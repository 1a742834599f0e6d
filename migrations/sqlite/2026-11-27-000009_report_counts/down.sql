DROP INDEX ix_assignment_history_scheme_customer;
DROP TABLE deleted_customers;
DROP TABLE customer_counts;
DROP TABLE category_counts;
