ALTER TABLE category_members DROP INDEX ix_category_members_category,
    ADD INDEX ix_category_members_category (scheme_id, category_code, customer_code);
ALTER TABLE category_members DROP COLUMN classification_vector;
