CREATE INDEX ix_customer_attributes_code ON customer_attributes (attr_key, customer_code, value_number, value_text);
