-- Campaign code pools: one row per code, unique within its tenant's campaign.
-- status is the code's state as of its last event; a 'reserved' row whose
-- expires_at has passed counts as available (codes_counts below), exactly as in
-- Redis, where the reserve script returns expired reservations lazily.
-- version is the campaign pool's version at the row's last change (a guard
-- against applying an old event over a newer one).

CREATE TABLE campaign_codes (
    tenant_id   text NOT NULL,
    campaign_id text NOT NULL,
    type        text NOT NULL,
    code        text NOT NULL,
    status      text NOT NULL DEFAULT 'available'
                CHECK (status IN ('available', 'reserved', 'assigned')),
    reserve_id  text,
    reserved_at timestamptz,
    expires_at  timestamptz,
    assigned_at timestamptz,
    uploaded_at timestamptz NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    version     bigint NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, code)
);

-- The count queries: by campaign and type, grouped by status, expiry for reserved.
CREATE INDEX campaign_codes_counts
    ON campaign_codes (tenant_id, campaign_id, type, status, expires_at);

-- Counts by status as the API defines them (an expired reservation is available).
CREATE VIEW campaign_code_counts AS
SELECT tenant_id, campaign_id, type,
       count(*) FILTER (WHERE status = 'available'
                           OR (status = 'reserved' AND expires_at <= now())) AS available,
       count(*) FILTER (WHERE status = 'reserved' AND expires_at > now()) AS reserved,
       count(*) FILTER (WHERE status = 'assigned') AS assigned
  FROM campaign_codes
 GROUP BY tenant_id, campaign_id, type;
