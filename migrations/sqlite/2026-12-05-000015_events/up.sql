-- The change feed. A change writes its events in its own transaction, without a
-- position; the sequencer numbers committed events afterwards (event_sequence holds
-- the last number given and how far retention has pruned), so that a reader's cursor
-- never passes an event whose transaction has yet to commit.
CREATE TABLE events (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    position BIGINT NULL,
    event_type TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX ux_events_position ON events (position);

CREATE TABLE event_sequence (
    id INTEGER NOT NULL PRIMARY KEY,
    last_position BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL
);

INSERT INTO event_sequence (id, last_position, pruned_through) VALUES (1, 0, 0);
