-- Each customer's name, phone and email as duplicates compare them (normalised by the
-- service: full-width folded, punctuation and legal-form suffixes dropped, …), so that
-- the archive groups by an index. Written with the customer; the service fills in the
-- rows of customers written before this migration or behind its back.
CREATE TABLE customer_match_keys (
    customer_id BIGINT NOT NULL PRIMARY KEY,
    name_key VARCHAR(200) NOT NULL,
    phone_key VARCHAR(40) NULL,
    email_key VARCHAR(254) NULL,
    KEY ix_customer_match_keys_name (name_key, customer_id),
    KEY ix_customer_match_keys_phone (phone_key, customer_id),
    KEY ix_customer_match_keys_email (email_key, customer_id),
    CONSTRAINT fk_customer_match_keys_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
