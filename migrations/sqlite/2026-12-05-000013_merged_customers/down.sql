DROP TABLE merged_customers;
