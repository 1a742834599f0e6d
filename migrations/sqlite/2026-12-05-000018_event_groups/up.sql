-- A row of the feed may hold a group of events: the same classification change of
-- many customers (a run's batch, an import's chunk), stored once with their codes
-- and numbered as a block of event_count consecutive positions from position, so
-- that writing and numbering cost a row per group instead of a row per customer.
ALTER TABLE events ADD COLUMN event_count INTEGER NOT NULL DEFAULT 1;
