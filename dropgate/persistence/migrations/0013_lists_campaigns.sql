-- v1.1 reads (#17): every list is a keyset walk over an index, newest first on
-- (created_at, id) (codes: by code, the primary key), so page 10,000 costs what
-- page 1 costs. Campaigns become rows of their own; codes record whom they were
-- assigned to; uploads are staged under their upload number until committed (#21).

CREATE INDEX tenants_list ON tenants (created_at, tenant_id);
CREATE INDEX tenants_list_status ON tenants (subscription_status, created_at, tenant_id);
CREATE INDEX api_keys_list ON api_keys (created_at, key_id);
CREATE INDEX api_keys_list_tenant ON api_keys (tenant_id, created_at, key_id);
CREATE INDEX api_keys_list_role ON api_keys (role, created_at, key_id);

CREATE INDEX invite_codes_list ON invite_codes (tenant_id, created_at, code);
CREATE INDEX invite_code_uses_list ON invite_code_uses (tenant_id, code, used_at, user_id);

CREATE INDEX promo_codes_list ON promo_codes (tenant_id, created_at, code);
CREATE INDEX promo_code_uses_list ON promo_code_uses (tenant_id, code, used_at, use_id);
CREATE INDEX promo_code_uses_list_customer
    ON promo_code_uses (tenant_id, code, customer_id, used_at, use_id);

CREATE INDEX offers_list ON offers (tenant_id, created_at, offer_id);
CREATE INDEX offers_list_event ON offers (tenant_id, event_id, created_at, offer_id);
CREATE INDEX offer_purchases_list ON offer_purchases (tenant_id, created_at, purchase_id);
CREATE INDEX offer_purchases_list_offer
    ON offer_purchases (tenant_id, offer_id, created_at, purchase_id);
CREATE INDEX offer_purchases_list_user
    ON offer_purchases (tenant_id, user_id, created_at, purchase_id);

CREATE INDEX payments_list ON payments (tenant_id, created_at, payment_id);
CREATE INDEX withdrawals_list ON withdrawals (tenant_id, created_at, withdrawal_id);
CREATE INDEX orders_list ON orders (tenant_id, created_at, order_id);
CREATE INDEX bookings_list ON bookings (tenant_id, created_at, booking_id);
CREATE INDEX bookings_list_resource ON bookings (tenant_id, resource_id, created_at, booking_id);

-- Campaigns: created by POST /v1/campaigns or on the fly by an upload.
CREATE TABLE campaigns (
    tenant_id         text NOT NULL,
    campaign_id       text NOT NULL,
    name              text NOT NULL DEFAULT '',
    types             text[] NOT NULL DEFAULT '{}',
    reservation_ttl_s integer,
    low_watermark     integer,
    created_at        timestamptz NOT NULL,
    version           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaigns_list ON campaigns (tenant_id, created_at, campaign_id);

INSERT INTO campaigns (tenant_id, campaign_id, types, created_at)
SELECT tenant_id, campaign_id, array_agg(DISTINCT type ORDER BY type), min(uploaded_at)
  FROM campaign_codes GROUP BY tenant_id, campaign_id
    ON CONFLICT DO NOTHING;

ALTER TABLE campaign_codes ADD COLUMN assigned_to text;

-- Uploads of several batches are staged (#21): their rows are written as the batches
-- come, marked with the upload's number, and stay out of lists and exports while the
-- upload is pending; the commit deletes one row here, a discard deletes the upload's rows.
ALTER TABLE campaign_codes ADD COLUMN upload bigint;
CREATE TABLE campaign_pending_uploads (
    tenant_id   text NOT NULL,
    campaign_id text NOT NULL,
    upload      bigint NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, upload)
);
