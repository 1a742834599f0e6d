-- Attribute definitions (分类属性) hang on a category and hold for its whole subtree.
-- Values and bounds are JSON literals of the definition's type.
CREATE TABLE attribute_definitions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    scheme_id BIGINT NOT NULL,
    category_id BIGINT NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    attr_key VARCHAR(64) NOT NULL,
    label VARCHAR(200) NOT NULL,
    value_type VARCHAR(16) NOT NULL,
    required BOOLEAN NOT NULL,
    default_value TEXT NULL,
    options TEXT NULL,
    min_value VARCHAR(64) NULL,
    max_value VARCHAR(64) NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_attribute_definitions_category_key (scheme_id, category_code, attr_key),
    KEY ix_attribute_definitions_key (attr_key),
    CONSTRAINT fk_attribute_definitions_scheme FOREIGN KEY (scheme_id) REFERENCES schemes (id),
    CONSTRAINT fk_attribute_definitions_category FOREIGN KEY (category_id) REFERENCES categories (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A customer's typed values, one row per attribute. Numbers (and booleans as 0/1)
-- compare in value_number, strings, enum options and ISO dates in value_text;
-- value_json keeps the value exactly as it was given. Defaults are stored too
-- (from_default), so that search sees the value every read shows.
CREATE TABLE customer_attributes (
    customer_id BIGINT NOT NULL,
    attr_key VARCHAR(64) NOT NULL,
    customer_code VARCHAR(40) NOT NULL,
    value_json VARCHAR(2100) NOT NULL,
    value_text VARCHAR(500) NULL,
    value_number DOUBLE NULL,
    from_default BOOLEAN NOT NULL,
    PRIMARY KEY (customer_id, attr_key),
    KEY ix_customer_attributes_text (attr_key, value_text, customer_code),
    KEY ix_customer_attributes_number (attr_key, value_number, customer_code),
    CONSTRAINT fk_customer_attributes_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The current values as JSON next to `classification`, for single-row reads.
ALTER TABLE customers ADD COLUMN attributes TEXT NULL;

-- Values a move dropped because the new category does not define them.
ALTER TABLE assignment_history ADD COLUMN dropped_attributes TEXT NULL;
