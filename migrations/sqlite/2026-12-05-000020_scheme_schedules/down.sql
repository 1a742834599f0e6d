ALTER TABLE schemes DROP COLUMN schedule_next_at;
ALTER TABLE schemes DROP COLUMN schedule;
