DROP INDEX ix_category_members_category;
CREATE INDEX ix_category_members_category ON category_members (scheme_id, category_code, customer_code);
ALTER TABLE category_members DROP COLUMN classification_vector;
