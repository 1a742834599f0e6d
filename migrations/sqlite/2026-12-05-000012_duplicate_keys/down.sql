DROP TABLE customer_match_keys;
