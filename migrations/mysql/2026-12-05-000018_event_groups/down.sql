ALTER TABLE events DROP COLUMN event_count;
