ALTER TABLE customers DROP COLUMN pending;
DROP TABLE pending_changes;
