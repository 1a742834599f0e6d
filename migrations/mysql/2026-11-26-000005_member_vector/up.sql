-- Every membership row carries the customer's whole classification as
-- "|<scheme id>:<category code>|…|", in the category index too, so that a list
-- filtered by several categories tests the others on the index entries it scans
-- (INSTR with "|<scheme id>:<code>" is the subtree) instead of probing each customer.
ALTER TABLE category_members ADD COLUMN classification_vector VARCHAR(2000) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '';
UPDATE category_members SET classification_vector = COALESCE((
    SELECT CONCAT('|', GROUP_CONCAT(CONCAT(cc.scheme_id, ':', cc.category_code) ORDER BY cc.scheme_id SEPARATOR '|'), '|')
    FROM customer_categories cc WHERE cc.customer_id = category_members.customer_id), '');
ALTER TABLE category_members DROP INDEX ix_category_members_category,
    ADD INDEX ix_category_members_category (scheme_id, category_code, customer_code, classification_vector);
