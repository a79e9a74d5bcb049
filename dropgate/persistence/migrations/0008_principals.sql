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

-- Withdrawals: the identities of the keys behind them decide four-eyes ("name:<name,
-- casefolded>" or "key:<key id>"); initiated_by / approved_by are labels. NULL
-- initiator: a withdrawal made before identities were recorded. A rejected withdrawal
-- moves no money (withdrawals_balance counts 'completed' only).
ALTER TABLE withdrawals DROP CONSTRAINT IF EXISTS withdrawals_status_check;
ALTER TABLE withdrawals DROP CONSTRAINT IF EXISTS withdrawals_check;
ALTER TABLE withdrawals
    ADD COLUMN initiator        text,
    ADD COLUMN initiator_key_id text,
    ADD COLUMN approver         text,
    ADD COLUMN approver_key_id  text,
    ADD COLUMN rejected_at      timestamptz,
    ADD COLUMN reject_reason    text,
    ADD CONSTRAINT withdrawals_status_check CHECK (status IN ('pending', 'completed', 'rejected')),
    ADD CONSTRAINT withdrawals_four_eyes CHECK (
        status = 'pending'
        OR (initiator IS NULL AND approved_by IS NOT NULL AND approved_by <> initiated_by)
        OR (initiator IS NOT NULL AND approver IS NOT NULL AND approver <> initiator));

-- Every subscription status a tenant has had, with when and by which key (NULL: the
-- bootstrap key, the CLI, or a tenant that existed before this table: its state then
-- is its first row). Kept forever: nothing deletes from it.
CREATE TABLE subscription_history (
    tenant_id           text NOT NULL,
    version             bigint NOT NULL,
    subscription_status text NOT NULL,
    trial_end           timestamptz,
    changed_at          timestamptz NOT NULL,
    changed_by          text,
    PRIMARY KEY (tenant_id, version)
);
INSERT INTO subscription_history (tenant_id, version, subscription_status, trial_end, changed_at)
SELECT tenant_id, version, subscription_status, trial_end, created_at FROM tenants;

-- Orders change status after creation (PATCH /v1/orders/{id}): versioned like the
-- other ledger rows.
ALTER TABLE orders
    ADD COLUMN version    bigint NOT NULL DEFAULT 1,
    ADD COLUMN updated_at timestamptz;

-- Bookings can be canceled: a canceled booking no longer holds its place, and the
-- slot's count follows the rows' status by trigger.
ALTER TABLE bookings
    ADD COLUMN status      text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'canceled')),
    ADD COLUMN canceled_at timestamptz;

CREATE OR REPLACE FUNCTION bookings_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta integer := 0;
    r     bookings%ROWTYPE;
BEGIN
    IF TG_OP = 'INSERT' THEN
        r := NEW;
        IF NEW.status = 'booked' THEN delta := 1; END IF;
    ELSIF TG_OP = 'DELETE' THEN
        r := OLD;
        IF OLD.status = 'booked' THEN delta := -1; END IF;
    ELSE
        r := NEW;
        IF OLD.status = 'booked' AND NEW.status <> 'booked' THEN delta := -1; END IF;
        IF OLD.status <> 'booked' AND NEW.status = 'booked' THEN delta := 1; END IF;
    END IF;
    IF delta <> 0 THEN
        UPDATE booking_slots SET booked = booked + delta
         WHERE tenant_id = r.tenant_id AND resource_id = r.resource_id
           AND slot_start = r.slot_start AND slot_end = r.slot_end;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER bookings_count ON bookings;
CREATE TRIGGER bookings_count AFTER INSERT OR DELETE OR UPDATE OF status ON bookings
FOR EACH ROW EXECUTE FUNCTION bookings_count();
