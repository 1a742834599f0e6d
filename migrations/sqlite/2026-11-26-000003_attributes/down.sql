ALTER TABLE assignment_history DROP COLUMN dropped_attributes;
ALTER TABLE customers DROP COLUMN attributes;
DROP TABLE customer_attributes;
DROP TABLE attribute_definitions;
