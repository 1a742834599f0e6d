ALTER TABLE classification_runs DROP COLUMN stop_requested_at;
