-- Outbound webhooks: tenants' endpoints and the deliveries the dispatcher owes them.
-- Endpoints live only here (configuration, not hot state). Deliveries are the durable
-- queue and the delivery log at once: a row is written when the dispatcher first tried
-- an event (its outcome) or spilled it untried; retries are taken from here.

CREATE TABLE dg_webhook_endpoints (
    seq           bigserial UNIQUE,
    endpoint_id   text PRIMARY KEY,
    tenant_id     text NOT NULL,
    url           text NOT NULL,
    events        text[] NOT NULL,
    description   text,
    -- kept as given: the dispatcher signs with it (shown once, never answered again)
    secret        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    failing_since timestamptz,
    disabled_at   timestamptz
);
CREATE INDEX dg_webhook_endpoints_tenant ON dg_webhook_endpoints (tenant_id, seq DESC);

CREATE TABLE dg_webhook_deliveries (
    seq             bigserial PRIMARY KEY,
    delivery_id     text NOT NULL UNIQUE,
    endpoint_id     text NOT NULL REFERENCES dg_webhook_endpoints ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    entity          text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    spilled         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    last_attempt_at timestamptz,
    response_status integer,
    last_error      text,
    delivered_at    timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX dg_webhook_deliveries_due ON dg_webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX dg_webhook_deliveries_order ON dg_webhook_deliveries (endpoint_id, entity, seq)
    WHERE status = 'pending';
CREATE INDEX dg_webhook_deliveries_log ON dg_webhook_deliveries (endpoint_id, seq DESC);

-- codes.pool_low fires once per crossing: armed again when the pool is refilled.
CREATE TABLE dg_webhook_pool_state (
    tenant_id   text NOT NULL,
    campaign_id text NOT NULL,
    type        text NOT NULL,
    low         boolean NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, type)
);
