CREATE TABLE attribute_definitions (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    scheme_id BIGINT NOT NULL REFERENCES schemes (id),
    category_id BIGINT NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    category_code TEXT NOT NULL,
    attr_key TEXT NOT NULL,
    label TEXT NOT NULL,
    value_type TEXT NOT NULL,
    required BOOLEAN NOT NULL,
    default_value TEXT NULL,
    options TEXT NULL,
    min_value TEXT NULL,
    max_value TEXT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX uq_attribute_definitions_category_key ON attribute_definitions (scheme_id, category_code, attr_key);
CREATE INDEX ix_attribute_definitions_key ON attribute_definitions (attr_key);

CREATE TABLE customer_attributes (
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    attr_key TEXT NOT NULL,
    customer_code TEXT NOT NULL,
    value_json TEXT NOT NULL,
    value_text TEXT NULL,
    value_number DOUBLE NULL,
    from_default BOOLEAN NOT NULL,
    PRIMARY KEY (customer_id, attr_key)
);
CREATE INDEX ix_customer_attributes_text ON customer_attributes (attr_key, value_text, customer_code);
CREATE INDEX ix_customer_attributes_number ON customer_attributes (attr_key, value_number, customer_code);

ALTER TABLE customers ADD COLUMN attributes TEXT NULL;
ALTER TABLE assignment_history ADD COLUMN dropped_attributes TEXT NULL;
