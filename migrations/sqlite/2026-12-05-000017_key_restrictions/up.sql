-- Record-level data permission: a key may be restricted to customers in some category
-- subtrees (JSON, {"REGION": ["01", "0203"]}); a webhook keeps the restriction of the
-- key that created it.
ALTER TABLE api_keys ADD COLUMN restriction TEXT NULL;
ALTER TABLE webhooks ADD COLUMN restriction TEXT NULL;
