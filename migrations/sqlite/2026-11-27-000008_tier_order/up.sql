-- Ordered schemes and directions of moves (see the MySQL migration).
ALTER TABLE schemes ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE categories ADD COLUMN tier_rank INTEGER NULL;
ALTER TABLE assignment_history ADD COLUMN direction TEXT NOT NULL DEFAULT 'lateral';
UPDATE assignment_history SET direction = CASE WHEN from_category IS NULL THEN 'in' WHEN to_category IS NULL THEN 'out' ELSE 'lateral' END;
