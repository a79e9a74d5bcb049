-- The persister's bookkeeping, tenants and API keys.

CREATE TABLE dg_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- The committed offset of each partition's event log, advanced in the same
-- transaction as the rows its events produced: an event is applied exactly once.
CREATE TABLE dg_partition_offsets (
    partition      integer PRIMARY KEY,
    last_ms        bigint NOT NULL DEFAULT 0,
    last_seq       bigint NOT NULL DEFAULT 0,
    applied_events bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Events the persister could not apply after bounded retries.
CREATE TABLE dg_dead_letters (
    partition  integer NOT NULL,
    stream_id  text NOT NULL,
    event_type text NOT NULL,
    entity     text NOT NULL,
    version    bigint NOT NULL,
    payload    jsonb NOT NULL,
    error      text NOT NULL,
    attempts   integer NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, stream_id)
);

CREATE TABLE tenants (
    tenant_id           text PRIMARY KEY,
    name                text NOT NULL,
    subscription_status text NOT NULL,
    trial_end           timestamptz,
    created_at          timestamptz NOT NULL,
    version             bigint NOT NULL
);

CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    secret_sha256 text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'service')),
    tenant_id     text,
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
