-- Subscription-gated tenant operations: payments, withdrawals, orders, bookings.
-- Balances and slot counts are kept by triggers from the rows (any INSERT, UPDATE
-- or DELETE, by the persister or by hand), and tenant_balances_from_rows derives
-- the balances from the rows alone, for reconciliation.

CREATE TABLE payments (
    tenant_id    text NOT NULL,
    payment_id   text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL,
    reference    text NOT NULL,
    epoch        bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)
);

CREATE TABLE withdrawals (
    tenant_id     text NOT NULL,
    withdrawal_id text NOT NULL,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    currency      text NOT NULL,
    initiated_by  text NOT NULL,
    approved_by   text,
    status        text NOT NULL CHECK (status IN ('pending', 'completed')),
    created_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    version       bigint NOT NULL,
    PRIMARY KEY (tenant_id, withdrawal_id),
    CHECK (status = 'pending' OR (approved_by IS NOT NULL AND approved_by <> initiated_by))
);

CREATE TABLE orders (
    tenant_id   text NOT NULL,
    order_id    text NOT NULL,
    items       jsonb NOT NULL,
    total_minor bigint NOT NULL CHECK (total_minor >= 0),
    currency    text NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);

CREATE TABLE booking_slots (
    tenant_id   text NOT NULL,
    resource_id text NOT NULL,
    slot_start  timestamptz NOT NULL,
    slot_end    timestamptz NOT NULL,
    capacity    integer NOT NULL CHECK (capacity > 0),
    booked      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, resource_id, slot_start, slot_end),
    CHECK (booked BETWEEN 0 AND capacity)
);

CREATE TABLE bookings (
    tenant_id   text NOT NULL,
    booking_id  text NOT NULL,
    resource_id text NOT NULL,
    slot_start  timestamptz NOT NULL,
    slot_end    timestamptz NOT NULL,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, booking_id),
    FOREIGN KEY (tenant_id, resource_id, slot_start, slot_end)
        REFERENCES booking_slots (tenant_id, resource_id, slot_start, slot_end) ON DELETE CASCADE
);
CREATE INDEX bookings_slot ON bookings (tenant_id, resource_id, slot_start, slot_end);

-- Balance per tenant and currency: payments in, completed withdrawals out.
CREATE TABLE tenant_balances (
    tenant_id     text NOT NULL,
    currency      text NOT NULL,
    balance_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, currency)
);

CREATE FUNCTION ledger_balance_add(p_tenant text, p_currency text, p_delta bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_delta = 0 THEN RETURN; END IF;
    INSERT INTO tenant_balances (tenant_id, currency, balance_minor)
    VALUES (p_tenant, p_currency, p_delta)
    ON CONFLICT (tenant_id, currency)
    DO UPDATE SET balance_minor = tenant_balances.balance_minor + EXCLUDED.balance_minor;
END $$;

CREATE FUNCTION payments_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM ledger_balance_add(OLD.tenant_id, OLD.currency, -OLD.amount_minor);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM ledger_balance_add(NEW.tenant_id, NEW.currency, NEW.amount_minor);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER payments_balance AFTER INSERT OR UPDATE OR DELETE ON payments
FOR EACH ROW EXECUTE FUNCTION payments_balance();

CREATE FUNCTION withdrawals_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'completed' THEN
        PERFORM ledger_balance_add(OLD.tenant_id, OLD.currency, OLD.amount_minor);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status = 'completed' THEN
        PERFORM ledger_balance_add(NEW.tenant_id, NEW.currency, -NEW.amount_minor);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER withdrawals_balance AFTER INSERT OR UPDATE OR DELETE ON withdrawals
FOR EACH ROW EXECUTE FUNCTION withdrawals_balance();

CREATE FUNCTION bookings_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE booking_slots SET booked = booked + 1
         WHERE tenant_id = NEW.tenant_id AND resource_id = NEW.resource_id
           AND slot_start = NEW.slot_start AND slot_end = NEW.slot_end;
        RETURN NULL;
    END IF;
    UPDATE booking_slots SET booked = booked - 1
     WHERE tenant_id = OLD.tenant_id AND resource_id = OLD.resource_id
       AND slot_start = OLD.slot_start AND slot_end = OLD.slot_end;
    RETURN NULL;
END $$;

CREATE TRIGGER bookings_count AFTER INSERT OR DELETE ON bookings
FOR EACH ROW EXECUTE FUNCTION bookings_count();

-- The balances recomputed from the rows alone (what tenant_balances must equal).
CREATE VIEW tenant_balances_from_rows AS
SELECT tenant_id, currency, sum(delta)::bigint AS balance_minor
  FROM (SELECT tenant_id, currency, amount_minor AS delta FROM payments
        UNION ALL
        SELECT tenant_id, currency, -amount_minor FROM withdrawals WHERE status = 'completed') AS m
 GROUP BY tenant_id, currency;
