"""Endpoints and deliveries in PostgreSQL: what the API and the dispatcher share.

Endpoints are configuration, read by the dispatcher through a short cache
(``EndpointCache``), never on the request path of other routes. Deliveries are the
durable queue of what is owed and the log the API lists (its pages: ``ListSpec``s in
http/listspecs.py, like every list), one row per (endpoint,
event id): inserting the same pair again changes nothing, which is what makes a
replayed log entry harmless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dropgate.errors import NotFound, ValidationError
from dropgate.ids import new_id
from dropgate.models.webhooks import EVENT_TYPES
from dropgate.webhooks.sealing import SecretBox

_SELECT_ENDPOINT = """SELECT seq, endpoint_id, tenant_id, url, events, description, secret,
                             created_at, disabled_at FROM dg_webhook_endpoints"""


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    secret: str  # opened: what signs (PostgreSQL holds it sealed, webhooks/sealing.py)
    created_at: datetime
    description: str | None = None
    disabled_at: datetime | None = None
    seq: int = 0

    def wants(self, event_type: str) -> bool:
        return self.disabled_at is None and ("*" in self.events or event_type in self.events)


def _endpoint(row: asyncpg.Record, box: SecretBox) -> Endpoint:
    secret = box.open(row["secret"], endpoint_id=row["endpoint_id"])
    return Endpoint(endpoint_id=row["endpoint_id"], tenant_id=row["tenant_id"], url=row["url"],
                    events=tuple(row["events"]), secret=secret, created_at=row["created_at"],
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


class WebhookStore:
    """Every SQL statement about endpoints and deliveries."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox) -> None:
        self._pool = pool
        self.box = box

    # -- endpoints ---------------------------------------------------------------------
    async def create_endpoint(self, tenant_id: str, *, url: str, events: list[str],
                              description: str | None, secret: str) -> Endpoint:
        endpoint_id = new_id("we_", 12)
        row = await self._pool.fetchrow(
            """INSERT INTO dg_webhook_endpoints (endpoint_id, tenant_id, url, events, description, secret)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING seq, endpoint_id, tenant_id, url, events, description, secret,
                         created_at, disabled_at""",
            endpoint_id, tenant_id, url, events, description,
            self.box.seal(secret, endpoint_id=endpoint_id))
        return _endpoint(row, self.box)

    async def endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        row = await self._pool.fetchrow(
            _SELECT_ENDPOINT + " WHERE endpoint_id = $1 AND tenant_id = $2", endpoint_id, tenant_id)
        if row is None:
            raise NotFound("No such webhook endpoint.", details={"endpoint_id": endpoint_id})
        return _endpoint(row, self.box)

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        done = await self._pool.fetchval(
            "DELETE FROM dg_webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 RETURNING 1",
            endpoint_id, tenant_id)
        if done is None:
            raise NotFound("No such webhook endpoint.", details={"endpoint_id": endpoint_id})

    async def any_enabled(self) -> bool:
        """Whether any tenant has an enabled endpoint (the dispatcher's skip)."""
        return bool(await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM dg_webhook_endpoints WHERE disabled_at IS NULL)"))

    async def enabled_endpoints(self, tenant_ids: list[str]) -> dict[str, list[Endpoint]]:
        rows = await self._pool.fetch(
            _SELECT_ENDPOINT + " WHERE tenant_id = ANY($1) AND disabled_at IS NULL ORDER BY seq",
            tenant_ids)
        found: dict[str, list[Endpoint]] = {t: [] for t in tenant_ids}
        for row in rows:
            found[row["tenant_id"]].append(_endpoint(row, self.box))
        return found


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
