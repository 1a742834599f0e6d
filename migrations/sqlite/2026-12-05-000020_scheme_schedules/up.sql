-- A scheme may start classification runs by itself: schedule holds {cron, timezone,
-- dry_run} as JSON, schedule_next_at the next firing (UTC). A replica fires a due
-- schedule by moving schedule_next_at on (compare-and-set), so each firing starts one
-- run whichever replicas race for it.
ALTER TABLE schemes ADD COLUMN schedule TEXT NULL;
ALTER TABLE schemes ADD COLUMN schedule_next_at TIMESTAMP NULL;
