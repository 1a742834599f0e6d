-- Ordered schemes (客户升级/降级): categories carry a rank (higher is better), and
-- every history entry the direction of its move, fixed when it happened. `rank` is a
-- reserved word in MySQL 8, hence `tier_rank`.
ALTER TABLE schemes ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE categories ADD COLUMN tier_rank INT NULL;
ALTER TABLE assignment_history ADD COLUMN direction VARCHAR(8) NOT NULL DEFAULT 'lateral';
-- No scheme was ordered before: earlier moves are in, out or lateral.
UPDATE assignment_history SET direction = CASE WHEN from_category IS NULL THEN 'in' WHEN to_category IS NULL THEN 'out' ELSE 'lateral' END;
