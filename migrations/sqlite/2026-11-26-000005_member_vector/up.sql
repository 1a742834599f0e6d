ALTER TABLE category_members ADD COLUMN classification_vector TEXT NOT NULL DEFAULT '';
UPDATE category_members SET classification_vector = COALESCE((
    SELECT '|' || group_concat(cc.scheme_id || ':' || cc.category_code, '|') || '|'
    FROM customer_categories cc WHERE cc.customer_id = category_members.customer_id), '');
DROP INDEX ix_category_members_category;
CREATE INDEX ix_category_members_category ON category_members (scheme_id, category_code, customer_code, classification_vector);
