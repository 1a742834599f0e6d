ALTER TABLE assignment_history DROP COLUMN direction;
ALTER TABLE categories DROP COLUMN tier_rank;
ALTER TABLE schemes DROP COLUMN ordered;
