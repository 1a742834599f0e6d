-- Webhook endpoints and the log of their deliveries. An endpoint is delivered the
-- feed's events after `delivered_through`, in order, by the replica holding its
-- lease (`lease_owner` until `lease_until`); a failure sets `next_attempt_at`.
CREATE TABLE webhooks (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    url VARCHAR(2000) NOT NULL,
    description VARCHAR(500) NULL,
    types TEXT NULL,
    secret VARCHAR(200) NOT NULL,
    previous_secret VARCHAR(200) NULL,
    previous_secret_until DATETIME(6) NULL,
    enabled BOOLEAN NOT NULL,
    disabled_reason VARCHAR(1000) NULL,
    delivered_through BIGINT NOT NULL,
    failures INT NOT NULL,
    failing_since DATETIME(6) NULL,
    next_attempt_at DATETIME(6) NULL,
    lease_owner VARCHAR(64) NULL,
    lease_until DATETIME(6) NULL,
    created_by VARCHAR(100) NOT NULL,
    version BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhook_deliveries (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    webhook_id BIGINT NOT NULL,
    event_position BIGINT NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    attempt INT NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    response_status INT NULL,
    duration_ms BIGINT NOT NULL,
    error VARCHAR(1000) NULL,
    attempted_at DATETIME(6) NOT NULL,
    KEY ix_webhook_deliveries_webhook (webhook_id, id),
    KEY ix_webhook_deliveries_attempted (attempted_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
