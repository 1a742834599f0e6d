-- A classification run asked to stop (POST …/cancel) on whichever replica runs it:
-- the run reads this between batches, stops at the boundary and records
-- status cancelled.
ALTER TABLE classification_runs ADD COLUMN stop_requested_at TIMESTAMP NULL;
