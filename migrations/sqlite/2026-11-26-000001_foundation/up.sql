-- Same tables and constraints as migrations/mysql. SQLite compares text as BINARY, i.e. exactly.
CREATE TABLE schemes (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NULL,
    code_rule TEXT NOT NULL,
    required BOOLEAN NOT NULL DEFAULT FALSE,
    default_category TEXT NULL,
    auto_classify BOOLEAN NOT NULL DEFAULT FALSE,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT uq_schemes_code UNIQUE (code)
);

CREATE TABLE categories (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    scheme_id BIGINT NOT NULL REFERENCES schemes (id),
    code TEXT NOT NULL,
    parent_code TEXT NOT NULL DEFAULT '',
    level INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NULL,
    sort_order INTEGER NOT NULL DEFAULT 0,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT uq_categories_code UNIQUE (scheme_id, code),
    CONSTRAINT uq_categories_sibling_name UNIQUE (scheme_id, parent_code, name)
);

CREATE TABLE customers (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    short_name TEXT NULL,
    tax_id TEXT NULL,
    contact_name TEXT NULL,
    phone TEXT NULL,
    email TEXT NULL,
    address TEXT NULL,
    status TEXT NOT NULL,
    note TEXT NULL,
    -- The current assignments as JSON, rewritten with customer_categories in one
    -- transaction, so that reading a customer is a single-row lookup.
    classification TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT uq_customers_code UNIQUE (code),
    CONSTRAINT uq_customers_tax_id UNIQUE (tax_id)
);

CREATE TABLE customer_categories (
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    scheme_id BIGINT NOT NULL REFERENCES schemes (id),
    category_id BIGINT NOT NULL REFERENCES categories (id),
    category_code TEXT NOT NULL,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    assigned_at TIMESTAMP NOT NULL,
    PRIMARY KEY (customer_id, scheme_id)
);
CREATE INDEX ix_customer_categories_code ON customer_categories (scheme_id, category_code, customer_id);
CREATE INDEX ix_customer_categories_category ON customer_categories (category_id);

CREATE TABLE api_keys (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP NULL,
    CONSTRAINT uq_api_keys_name UNIQUE (name),
    CONSTRAINT uq_api_keys_secret_hash UNIQUE (secret_hash)
);
