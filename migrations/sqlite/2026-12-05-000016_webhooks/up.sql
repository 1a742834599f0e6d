-- Webhook endpoints and the log of their deliveries. An endpoint is delivered the
-- feed's events after `delivered_through`, in order, by the replica holding its
-- lease (`lease_owner` until `lease_until`); a failure sets `next_attempt_at`.
CREATE TABLE webhooks (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    description TEXT NULL,
    types TEXT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT NULL,
    previous_secret_until TIMESTAMP NULL,
    enabled BOOLEAN NOT NULL,
    disabled_reason TEXT NULL,
    delivered_through BIGINT NOT NULL,
    failures INTEGER NOT NULL,
    failing_since TIMESTAMP NULL,
    next_attempt_at TIMESTAMP NULL,
    lease_owner TEXT NULL,
    lease_until TIMESTAMP NULL,
    created_by TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE webhook_deliveries (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    webhook_id BIGINT NOT NULL,
    event_position BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    response_status INTEGER NULL,
    duration_ms BIGINT NOT NULL,
    error TEXT NULL,
    attempted_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX ix_webhook_deliveries_attempted ON webhook_deliveries (attempted_at);
