-- The change feed. A change writes its events in its own transaction, without a
-- position; the sequencer numbers committed events afterwards (event_sequence holds
-- the last number given and how far retention has pruned), so that a reader's cursor
-- never passes an event whose transaction has yet to commit.
CREATE TABLE events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    position BIGINT NULL,
    event_type VARCHAR(64) NOT NULL,
    occurred_at DATETIME(6) NOT NULL,
    data MEDIUMTEXT NOT NULL,
    UNIQUE KEY ux_events_position (position)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE event_sequence (
    id BIGINT NOT NULL PRIMARY KEY,
    last_position BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO event_sequence (id, last_position, pruned_through) VALUES (1, 0, 0);
