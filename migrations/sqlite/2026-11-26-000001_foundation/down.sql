DROP TABLE api_keys;
DROP TABLE customer_categories;
DROP TABLE customers;
DROP TABLE categories;
DROP TABLE schemes;
