-- Principals and scopes: who holds a key, what it may do, who minted it; withdrawals
-- that record the keys behind them and can be rejected; orders and bookings that can
-- change after creation; every subscription change kept with who made it.

-- NULL name: a key made before names; NULL scopes: every scope (space-separated
-- otherwise, as in Redis); NULL created_by: minted by the bootstrap key or the CLI.
ALTER TABLE api_keys
    ADD COLUMN name       text,
    ADD COLUMN scopes     text,
    ADD COLUMN created_by text;
CREATE INDEX api_keys_created_by ON api_keys (created_by) WHERE created_by IS NOT NULL;
