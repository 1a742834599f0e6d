DROP TABLE tier_holds;
ALTER TABLE schemes DROP COLUMN tier_policy;
