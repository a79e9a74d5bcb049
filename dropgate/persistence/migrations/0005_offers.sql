-- Offers, their purchases (with every status change) and the payment webhooks seen.
-- offers.reserved and offers.sold are kept by a trigger from the purchase rows
-- (pending = reserved, paid = sold), so no writer can make them drift; the CHECK
-- makes overselling impossible in PostgreSQL too.

CREATE TABLE offers (
    tenant_id       text NOT NULL,
    offer_id        text NOT NULL,
    event_id        text NOT NULL,
    name            text NOT NULL,
    price_minor     bigint NOT NULL CHECK (price_minor > 0),
    currency        text NOT NULL,
    inventory_total integer NOT NULL CHECK (inventory_total >= 0),
    reserved        integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    sold            integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    max_per_order   integer NOT NULL CHECK (max_per_order >= 1),
    active          boolean NOT NULL,
    archived        boolean NOT NULL DEFAULT false,
    expires_at      timestamptz,
    created_at      timestamptz NOT NULL,
    version         bigint NOT NULL,
    PRIMARY KEY (tenant_id, offer_id),
    CONSTRAINT offers_not_oversold CHECK (reserved + sold <= inventory_total)
);

-- The list query: an event's active, unarchived offers (unexpired checked on the rows).
CREATE INDEX offers_by_event ON offers (tenant_id, event_id, expires_at)
    WHERE active AND NOT archived;

CREATE TABLE offer_purchases (
    tenant_id           text NOT NULL,
    purchase_id         text NOT NULL,
    offer_id            text NOT NULL,
    user_id             text NOT NULL,
    quantity            integer NOT NULL CHECK (quantity > 0),
    status              text NOT NULL
                        CHECK (status IN ('pending', 'paid', 'released', 'expired', 'refunded')),
    amount_minor        bigint NOT NULL,
    currency            text NOT NULL,
    hold_expires_at     timestamptz NOT NULL,
    checkout_session_id text,
    payment_intent      text,
    refund_id           text,
    retaken             boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    version             bigint NOT NULL,
    PRIMARY KEY (tenant_id, purchase_id),
    FOREIGN KEY (tenant_id, offer_id) REFERENCES offers (tenant_id, offer_id)
);

-- A user's purchases, newest first; an offer's purchases by status (reconciliation).
CREATE INDEX offer_purchases_by_user ON offer_purchases (tenant_id, user_id, created_at DESC);
CREATE INDEX offer_purchases_by_offer ON offer_purchases (tenant_id, offer_id, status);
-- Stale holds by expiry (what a sweeper over PostgreSQL would scan).
CREATE INDEX offer_purchases_pending ON offer_purchases (hold_expires_at) WHERE status = 'pending';

-- Every status a purchase went through, one row per version.
CREATE TABLE offer_purchase_history (
    tenant_id   text NOT NULL,
    purchase_id text NOT NULL,
    version     bigint NOT NULL,
    status      text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, purchase_id, version),
    FOREIGN KEY (tenant_id, purchase_id) REFERENCES offer_purchases (tenant_id, purchase_id)
        ON DELETE CASCADE
);

CREATE TABLE webhook_events (
    event_id    text PRIMARY KEY,
    tenant_id   text NOT NULL,
    purchase_id text NOT NULL,
    type        text NOT NULL,
    outcome     text NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX webhook_events_by_purchase ON webhook_events (tenant_id, purchase_id);

CREATE FUNCTION offer_purchases_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_reserved integer := 0;
    d_sold     integer := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.status = 'pending' THEN d_reserved := d_reserved - OLD.quantity; END IF;
        IF OLD.status = 'paid' THEN d_sold := d_sold - OLD.quantity; END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status = 'pending' THEN d_reserved := d_reserved + NEW.quantity; END IF;
        IF NEW.status = 'paid' THEN d_sold := d_sold + NEW.quantity; END IF;
    END IF;
    IF d_reserved <> 0 OR d_sold <> 0 THEN
        UPDATE offers SET reserved = reserved + d_reserved, sold = sold + d_sold
         WHERE tenant_id = COALESCE(NEW.tenant_id, OLD.tenant_id)
           AND offer_id = COALESCE(NEW.offer_id, OLD.offer_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER offer_purchases_count
AFTER INSERT OR DELETE OR UPDATE OF status, quantity ON offer_purchases
FOR EACH ROW EXECUTE FUNCTION offer_purchases_count();
