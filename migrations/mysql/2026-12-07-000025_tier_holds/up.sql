-- An ordered scheme's hold rules against flapping (`tier_policy`, JSON), and what its
-- applied runs count per customer: how many consecutive runs it has failed the tier it
-- entered at `assigned_at`. A row whose category or moment no longer match the
-- customer's assignment is stale and counts as none. Stored, so that the count
-- survives restarts and holds for every replica.
ALTER TABLE schemes ADD COLUMN tier_policy TEXT NULL;

CREATE TABLE tier_holds (
    scheme_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    category_code VARCHAR(30) NOT NULL,
    assigned_at DATETIME(6) NOT NULL,
    failed_runs INT NOT NULL,
    run_id BIGINT NOT NULL,
    PRIMARY KEY (scheme_id, customer_id),
    CONSTRAINT fk_tier_holds_scheme FOREIGN KEY (scheme_id) REFERENCES schemes (id) ON DELETE CASCADE,
    CONSTRAINT fk_tier_holds_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
