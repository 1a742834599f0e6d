-- An attribute's values in customer-code order, the values in the entries: a page
-- filtered by a range (or any test but equality) scans this in page order and
-- tests each entry, instead of probing customer after customer.
CREATE INDEX ix_customer_attributes_code ON customer_attributes (attr_key, customer_code, value_number, value_text);
