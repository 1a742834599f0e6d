-- Each customer's name, phone and email as duplicates compare them (normalised by the
-- service: full-width folded, punctuation and legal-form suffixes dropped, …), so that
-- the archive groups by an index. Written with the customer; the service fills in the
-- rows of customers written before this migration or behind its back.
CREATE TABLE customer_match_keys (
    customer_id BIGINT NOT NULL PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    name_key TEXT NOT NULL,
    phone_key TEXT NULL,
    email_key TEXT NULL
);
CREATE INDEX ix_customer_match_keys_name ON customer_match_keys (name_key, customer_id);
CREATE INDEX ix_customer_match_keys_phone ON customer_match_keys (phone_key, customer_id);
CREATE INDEX ix_customer_match_keys_email ON customer_match_keys (email_key, customer_id);
