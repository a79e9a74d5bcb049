-- Cancels, refunds, disputes and per-buyer caps (docs/api.md, "Taking real money").
--
-- A purchase's units are no longer a function of its status alone: a full refund
-- without restock leaves its units sold, a partial refund or a dispute keeps them
-- sold. `units` says where they are ('held' while pending, 'sold', 'none'); the
-- trigger derives offers.sold from it (reserved still from the pending rows). `refunded_minor` is what was given
-- back so far (never more than was paid); `refunds` maps each refund id applied to
-- its amount (a refund id is applied once), and offer_refunds keeps one row per refund.

ALTER TABLE offer_purchases DROP CONSTRAINT IF EXISTS offer_purchases_status_check;
ALTER TABLE offer_purchases ADD CONSTRAINT offer_purchases_status_check
    CHECK (status IN ('pending', 'paid', 'released', 'expired', 'refunded', 'canceled',
                      'partially_refunded', 'disputed', 'failed'));

ALTER TABLE offer_purchases
    ADD COLUMN units text NOT NULL DEFAULT 'none' CHECK (units IN ('held', 'sold', 'none')),
    ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0,
    ADD COLUMN refunds jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD CONSTRAINT offer_purchases_refund_within_payment
        CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor);

-- Rows written before this migration: units from the status (the old trigger does not
-- fire on a `units` update, so the counters are untouched).
UPDATE offer_purchases SET units = CASE status WHEN 'pending' THEN 'held'
                                               WHEN 'paid' THEN 'sold' ELSE 'none' END;

CREATE OR REPLACE FUNCTION offer_purchases_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_reserved integer := 0;
    d_sold     integer := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.status = 'pending' THEN d_reserved := d_reserved - OLD.quantity; END IF;
        IF OLD.units = 'sold' THEN d_sold := d_sold - OLD.quantity; END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status = 'pending' THEN d_reserved := d_reserved + NEW.quantity; END IF;
        IF NEW.units = 'sold' THEN d_sold := d_sold + NEW.quantity; END IF;
    END IF;
    IF d_reserved <> 0 OR d_sold <> 0 THEN
        UPDATE offers SET reserved = reserved + d_reserved, sold = sold + d_sold
         WHERE tenant_id = COALESCE(NEW.tenant_id, OLD.tenant_id)
           AND offer_id = COALESCE(NEW.offer_id, OLD.offer_id);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER offer_purchases_count ON offer_purchases;
CREATE TRIGGER offer_purchases_count
AFTER INSERT OR DELETE OR UPDATE OF status, units, quantity ON offer_purchases
FOR EACH ROW EXECUTE FUNCTION offer_purchases_count();

-- One row per refund applied (by the refund route, a dashboard refund's webhook, or
-- the automatic refund of a payment that came too late): a refund id counts once.
CREATE TABLE offer_refunds (
    tenant_id    text NOT NULL,
    refund_id    text NOT NULL,
    purchase_id  text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, refund_id),
    FOREIGN KEY (tenant_id, purchase_id) REFERENCES offer_purchases (tenant_id, purchase_id)
        ON DELETE CASCADE
);
CREATE INDEX offer_refunds_by_purchase ON offer_refunds (tenant_id, purchase_id);

-- Per-buyer caps and redirects: per offer, else per tenant (NULL: none / the default).
ALTER TABLE offers
    ADD COLUMN max_per_user integer CHECK (max_per_user IS NULL OR max_per_user >= 1),
    ADD COLUMN success_url text,
    ADD COLUMN cancel_url text;
ALTER TABLE tenants
    ADD COLUMN success_url text,
    ADD COLUMN cancel_url text,
    ADD COLUMN checkout_version bigint;  -- the version of the two URLs (tenant.checkout events)
