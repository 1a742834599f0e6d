ALTER TABLE webhooks DROP COLUMN restriction;
ALTER TABLE api_keys DROP COLUMN restriction;
