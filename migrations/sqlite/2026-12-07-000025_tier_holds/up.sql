-- An ordered scheme's hold rules against flapping (`tier_policy`, JSON), and what its
-- applied runs count per customer: how many consecutive runs it has failed the tier it
-- entered at `assigned_at`. A row whose category or moment no longer match the
-- customer's assignment is stale and counts as none. Stored, so that the count
-- survives restarts and holds for every replica.
ALTER TABLE schemes ADD COLUMN tier_policy TEXT NULL;

CREATE TABLE tier_holds (
    scheme_id BIGINT NOT NULL REFERENCES schemes (id) ON DELETE CASCADE,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    category_code TEXT NOT NULL,
    assigned_at TIMESTAMP NOT NULL,
    failed_runs INTEGER NOT NULL,
    run_id BIGINT NOT NULL,
    PRIMARY KEY (scheme_id, customer_id)
);
