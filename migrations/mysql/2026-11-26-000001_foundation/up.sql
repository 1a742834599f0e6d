-- utf8mb4_bin everywhere: Chinese names and emoji round-trip byte-exact and codes compare case-sensitively.
CREATE TABLE schemes (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    code VARCHAR(32) NOT NULL,
    name VARCHAR(100) NOT NULL,
    description TEXT NULL,
    code_rule VARCHAR(40) NOT NULL,
    required BOOLEAN NOT NULL DEFAULT FALSE,
    default_category VARCHAR(30) NULL,
    auto_classify BOOLEAN NOT NULL DEFAULT FALSE,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    version BIGINT NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_schemes_code (code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE categories (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    scheme_id BIGINT NOT NULL,
    code VARCHAR(30) NOT NULL,
    parent_code VARCHAR(30) NOT NULL DEFAULT '',
    level INT NOT NULL,
    name VARCHAR(100) NOT NULL,
    description TEXT NULL,
    sort_order INT NOT NULL DEFAULT 0,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    version BIGINT NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_categories_code (scheme_id, code),
    UNIQUE KEY uq_categories_sibling_name (scheme_id, parent_code, name),
    CONSTRAINT fk_categories_scheme FOREIGN KEY (scheme_id) REFERENCES schemes (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE customers (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    code VARCHAR(40) NOT NULL,
    name VARCHAR(200) NOT NULL,
    short_name VARCHAR(100) NULL,
    tax_id CHAR(18) NULL,
    contact_name VARCHAR(100) NULL,
    phone VARCHAR(40) NULL,
    email VARCHAR(254) NULL,
    address VARCHAR(500) NULL,
    status VARCHAR(16) NOT NULL,
    note TEXT NULL,
    -- The current assignments as JSON, rewritten with customer_categories in one
    -- transaction, so that reading a customer is a single-row lookup.
    classification TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY uq_customers_code (code),
    UNIQUE KEY uq_customers_tax_id (tax_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per customer and scheme: the primary key is the one-category-per-scheme rule.
-- category_code is kept beside category_id so that a subtree is a range scan on the code prefix.
CREATE TABLE customer_categories (
    customer_id BIGINT NOT NULL,
    scheme_id BIGINT NOT NULL,
    category_id BIGINT NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    assigned_at DATETIME(6) NOT NULL,
    PRIMARY KEY (customer_id, scheme_id),
    KEY ix_customer_categories_code (scheme_id, category_code, customer_id),
    KEY ix_customer_categories_category (category_id),
    CONSTRAINT fk_customer_categories_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE,
    CONSTRAINT fk_customer_categories_scheme FOREIGN KEY (scheme_id) REFERENCES schemes (id),
    CONSTRAINT fk_customer_categories_category FOREIGN KEY (category_id) REFERENCES categories (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE api_keys (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    scope VARCHAR(16) NOT NULL,
    secret_hash CHAR(64) NOT NULL,
    prefix VARCHAR(16) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    revoked_at DATETIME(6) NULL,
    UNIQUE KEY uq_api_keys_name (name),
    UNIQUE KEY uq_api_keys_secret_hash (secret_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
