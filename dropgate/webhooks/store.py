"""Endpoints and deliveries in PostgreSQL: what the API and the dispatcher share.

Endpoints are configuration, read by the dispatcher through a short cache
(``EndpointCache``), never on the request path of other routes. Deliveries are the
durable queue of what is owed and the log the API lists, one row per (endpoint,
event id): inserting the same pair again changes nothing, which is what makes a
replayed log entry harmless.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dropgate.errors import NotFound, ValidationError
from dropgate.ids import new_id
from dropgate.models.webhooks import EVENT_TYPES, WebhookDelivery, WebhookEndpoint

_SELECT_ENDPOINT = """SELECT seq, endpoint_id, tenant_id, url, events, description, secret,
                             created_at, disabled_at FROM dg_webhook_endpoints"""


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime
    description: str | None = None
    disabled_at: datetime | None = None
    seq: int = 0

    def wants(self, event_type: str) -> bool:
        return self.disabled_at is None and ("*" in self.events or event_type in self.events)

    def view(self) -> WebhookEndpoint:
        return WebhookEndpoint(
            endpoint_id=self.endpoint_id, url=self.url, events=list(self.events),
            status="disabled" if self.disabled_at else "enabled", created_at=self.created_at,
            description=self.description, disabled_at=self.disabled_at)


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(endpoint_id=row["endpoint_id"], tenant_id=row["tenant_id"], url=row["url"],
                    events=tuple(row["events"]), secret=row["secret"], created_at=row["created_at"],
                    description=row["description"], disabled_at=row["disabled_at"], seq=row["seq"])


def check_events(events: list[str]) -> list[str]:
    """The subscribed types, each a public type, or exactly ``["*"]`` (400 otherwise)."""
    if "*" in events:
        if events != ["*"]:
            raise ValidationError('"*" subscribes to every type and stands alone.',
                                  details={"field": "events"})
        return events
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ValidationError(f"Unknown event type {unknown[0]!r}.",
                              details={"field": "events", "types": list(EVENT_TYPES)})
    return sorted(set(events), key=events.index)


# -- pages ------------------------------------------------------------------------------
def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "s":
            raise ValueError(raw)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("Bad cursor.", details={"field": "cursor"}) from None


def parse_limit(value: str | None) -> int:
    if value is None:
        return 100
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise ValidationError("limit must be an integer from 1 to 1000.", details={"field": "limit"})
    return limit


class WebhookStore:
    """Every SQL statement about endpoints and deliveries."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- endpoints ---------------------------------------------------------------------
    async def create_endpoint(self, tenant_id: str, *, url: str, events: list[str],
                              description: str | None, secret: str) -> Endpoint:
        row = await self._pool.fetchrow(
            """INSERT INTO dg_webhook_endpoints (endpoint_id, tenant_id, url, events, description, secret)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING seq, endpoint_id, tenant_id, url, events, description, secret,
                         created_at, disabled_at""",
            new_id("we_", 12), tenant_id, url, events, description, secret)
        return _endpoint(row)

    async def endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        row = await self._pool.fetchrow(
            _SELECT_ENDPOINT + " WHERE endpoint_id = $1 AND tenant_id = $2", endpoint_id, tenant_id)
        if row is None:
            raise NotFound("No such webhook endpoint.", details={"endpoint_id": endpoint_id})
        return _endpoint(row)

    async def list_endpoints(self, tenant_id: str, *, limit: int, before: int | None
                             ) -> tuple[list[Endpoint], bool]:
        rows = await self._pool.fetch(
            _SELECT_ENDPOINT + """ WHERE tenant_id = $1 AND ($2::bigint IS NULL OR seq < $2)
                                  ORDER BY seq DESC LIMIT $3""", tenant_id, before, limit + 1)
        return [_endpoint(r) for r in rows[:limit]], len(rows) > limit

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        done = await self._pool.fetchval(
            "DELETE FROM dg_webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 RETURNING 1",
            endpoint_id, tenant_id)
        if done is None:
            raise NotFound("No such webhook endpoint.", details={"endpoint_id": endpoint_id})

    async def enabled_endpoints(self, tenant_ids: list[str]) -> dict[str, list[Endpoint]]:
        rows = await self._pool.fetch(
            _SELECT_ENDPOINT + " WHERE tenant_id = ANY($1) AND disabled_at IS NULL ORDER BY seq",
            tenant_ids)
        found: dict[str, list[Endpoint]] = {t: [] for t in tenant_ids}
        for row in rows:
            found[row["tenant_id"]].append(_endpoint(row))
        return found

    # -- the delivery log ----------------------------------------------------------------
    async def list_deliveries(self, endpoint_id: str, *, status: str | None, limit: int,
                              before: int | None) -> tuple[list[tuple[int, WebhookDelivery]], bool]:
        rows = await self._pool.fetch(
            """SELECT seq, delivery_id, event_id, event_type, status, attempts, created_at,
                      next_attempt_at, last_attempt_at, response_status, last_error, delivered_at
                 FROM dg_webhook_deliveries
                WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)
                  AND ($3::bigint IS NULL OR seq < $3)
                ORDER BY seq DESC LIMIT $4""", endpoint_id, status, before, limit + 1)
        return [(r["seq"], _delivery(r)) for r in rows[:limit]], len(rows) > limit


def _delivery(r: asyncpg.Record) -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=r["delivery_id"], event_id=r["event_id"], type=r["event_type"],
        status=r["status"], attempts=r["attempts"], created_at=r["created_at"],
        next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None,
        last_attempt_at=r["last_attempt_at"], response_status=r["response_status"],
        error=r["last_error"], delivered_at=r["delivered_at"])


class EndpointCache:
    """Each tenant's enabled endpoints, re-read at most every ``ttl_s`` and whenever the
    copy is not clearly younger than the newest event it is asked about: an endpoint
    registered before an event was appended always receives it, while a dispatcher
    working through a backlog does not query PostgreSQL per batch."""

    _CLOCK_MARGIN_MS = 1000  # stream ids are Redis time; loads are this host's

    def __init__(self, store: WebhookStore, *, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._cached: dict[str, tuple[float, list[Endpoint]]] = {}  # tenant -> (loaded, wall s)

    async def for_tenants(self, tenant_ids: set[str], *, newest_event_ms: int = 0
                          ) -> dict[str, list[Endpoint]]:
        now = time.time()
        fresh_after = newest_event_ms / 1000 + self._CLOCK_MARGIN_MS / 1000
        stale = [t for t in tenant_ids
                 if (loaded := self._cached.get(t, (-1e18, []))[0]) < fresh_after or now - loaded > self._ttl_s]
        if stale:
            for tenant_id, endpoints in (await self._store.enabled_endpoints(stale)).items():
                self._cached[tenant_id] = (now, endpoints)
        return {t: self._cached[t][1] for t in tenant_ids}

    def forget(self) -> None:
        self._cached.clear()


def row_dict(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row.items())
