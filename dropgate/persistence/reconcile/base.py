"""What the runner gives a reconciler: the round's context, scopes, drift and repairs.

A reconciler (``generic.SpecReconciler``, driven by the entity specs) compares one
domain's Redis state with its PostgreSQL state (``compare``), fixes what the policy
allows (``recount``, ``repair``), and rebuilds the domain's Redis state from
PostgreSQL (``restore``). See docs/reconcile.md.

Entities are named as in the event log (``invite:<tenant>:<code>``); the part
before the first ``:`` is the entity kind (``--entity invite``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import msgspec
from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.keyspace import KeyIndex, Progress
from dropgate.engine.scripts import Scripts
from dropgate.persistence.database import connect_for_batch_work
from dropgate.persistence.watermark import committed_offsets, waiting_versions
from dropgate.progressbar import ProgressBar
from dropgate.settings import Settings

log = logging.getLogger("dropgate.reconcile")
repair_log = logging.getLogger("dropgate.reconcile.repair")

Problem = Literal[
    "missing_in_redis",      # PostgreSQL has it, Redis does not
    "missing_in_postgres",   # Redis has it, PostgreSQL does not (and no event of it is waiting)
    "redis_behind",          # PostgreSQL's version is newer: Redis lost writes
    "postgres_behind",       # Redis' version is newer and no event of it is waiting: lost events
    "differs",               # same version, different values: changed by hand
    "counter",               # a counter disagrees with the rows/members it counts (same store)
    "abandoned",             # a staged upload whose server died: pending, its staging expired
]


class Drift(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One disagreement: an entity, the field, and both sides' values."""

    domain: str
    entity: str
    field: str
    problem: Problem
    redis: Any = None
    postgres: Any = None
    redis_version: int | None = None
    postgres_version: int | None = None
    detail: str = ""

    @property
    def kind(self) -> str:
        return entity_kind(self.entity)


class Repair(msgspec.Struct, kw_only=True):
    """One repair action, as logged and counted."""

    domain: str
    entity: str
    action: Literal["replayed", "recounted", "reemitted", "restored", "deleted_from_redis",
                    "discarded"]
    detail: str


class KindCount(msgspec.Struct, kw_only=True):
    """One row of the summary table."""

    domain: str
    kind: str
    checked: int = 0          # entities compared
    members: int = 0          # set members compared (uses, codes, holds ...)
    in_flight: int = 0
    drift: int = 0            # entities with drift


@dataclass
class Comparison:
    counts: list[KindCount] = field(default_factory=list)
    drifts: list[Drift] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)


def entity_kind(entity: str) -> str:
    return entity.split(":", 1)[0]


@dataclass(frozen=True)
class Scope:
    """What to compare: a tenant, entity kinds, or (rechecks) exact entities."""

    tenant_id: str | None = None
    kinds: frozenset[str] | None = None
    entities: frozenset[str] | None = None

    def wants_kind(self, kind: str) -> bool:
        if self.kinds is not None and kind not in self.kinds:
            return False
        return self.entities is None or any(entity_kind(e) == kind for e in self.entities)

    def wants(self, entity: str, tenant_id: str | None) -> bool:
        if self.tenant_id is not None and tenant_id != self.tenant_id:
            return False
        if self.kinds is not None and entity_kind(entity) not in self.kinds:
            return False
        return self.entities is None or entity in self.entities

    def narrowed(self, entities: Iterable[str]) -> Scope:
        return Scope(tenant_id=self.tenant_id, kinds=self.kinds, entities=frozenset(entities))


class ReconcileContext:
    """The stores, the key index of this round, and the log's waiting events."""

    def __init__(self, *, redis: Redis, pool: asyncpg.Pool, database_url: str, keys: Keys, scripts: Scripts,
                 settings: Settings, progress: Progress | None = None) -> None:
        """``database_url``: where a round opens its snapshot's connection (not the pool's:
        ``connect_for_batch_work``)."""
        self.redis = redis
        self.pool = pool
        self.database_url = database_url
        self.keys = keys
        self.scripts = scripts
        self.settings = settings
        self.progress: Progress = progress or ProgressBar(enabled=False)
        self.repairs: list[Repair] = []
        self._index: KeyIndex | None = None
        self._pending: dict[int, dict[str, int]] = {}
        self._conn: Any = None
        self._tx: Any = None
        self._lock = asyncio.Lock()
        self.snapshot_offsets: dict[int, tuple[int, int]] = {}
        self._offsets_now: dict[int, tuple[int, int]] | None = None

    # -- per round --------------------------------------------------------------------
    async def begin_round(self) -> None:
        """Open this round's PostgreSQL snapshot (REPEATABLE READ, read only) BEFORE any
        Redis read: every PostgreSQL read of the round sees this one instant, with the
        committed offsets of that instant, and Redis, read afterwards, can only be ahead
        of it (or drifted)."""
        self._index, self._offsets_now = None, None  # this round reads afresh
        self._pending.clear()
        # a connection of its own: the round's aggregates grow with the tables, past the
        # pool's client timeout on a large installation
        conn = await connect_for_batch_work(self.settings, self.database_url)
        try:
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            self.snapshot_offsets = await committed_offsets(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn, self._tx = conn, tx

    async def end_round(self) -> None:
        conn, tx, self._conn, self._tx = self._conn, self._tx, None, None
        if conn is not None:
            try:
                await tx.rollback()
            finally:
                await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """A query in the round's snapshot (or, outside a round, on the pool)."""
        if self._conn is None:
            return list(await self.pool.fetch(sql, *args))
        async with self._lock:  # one connection: one query at a time
            return list(await self._conn.fetch(sql, *args))

    async def index(self, scope: Scope) -> KeyIndex:
        """Every key of the installation (or of the scope's tenant), scanned once per round."""
        if self._index is None:
            self._index = await KeyIndex.scan(self.redis, self.keys, tenant_id=scope.tenant_id,
                                              progress=self.progress)
        return self._index

    async def pending(self, partition: int) -> dict[str, int]:
        """The partition's ``waiting_versions``, read once a round and after the PostgreSQL
        side of a comparison: an event is either committed in what was read, or still here."""
        if partition not in self._pending:
            self._pending[partition] = await waiting_versions(self.redis, self.keys, partition)
        return self._pending[partition]

    async def unsettled(self, entity: str, partition: int, postgres_version: int | None) -> bool:
        """Could Redis be ahead of the snapshot for this entity only because events are
        on their way? Yes if the log holds an event of it newer than ``postgres_version``
        (any event, when None), or if the persister committed in this partition since the
        snapshot (events it trimmed meanwhile cannot be seen any more: recheck later)."""
        waiting = (await self.pending(partition)).get(entity)
        if waiting is not None and waiting > (postgres_version or 0):
            return True
        if self._offsets_now is None:  # read after the log: no commit since => nothing trimmed
            self._offsets_now = await committed_offsets(self.pool)
        return self._offsets_now.get(partition) != self.snapshot_offsets.get(partition)

    async def classify(self, entity: str, partition: int, redis_version: int | None,
                       postgres_version: int | None, *, versioned: bool = True,
                       redis_ahead: bool = False) -> Literal["in_flight"] | Problem:
        """The entity differs between the stores: is it in flight, or which drift?

        In flight: Redis is ahead of the snapshot (a newer version, an entity PostgreSQL
        lacks, or ``redis_ahead`` — e.g. a member Redis added since) and ``unsettled``.
        Without versions (API keys) every difference may be Redis ahead. PostgreSQL can
        never be ahead of Redis (its snapshot is taken first): that is drift.
        """
        pv = postgres_version
        newer = redis_version is not None and (pv is None or redis_version > pv)
        if (newer or redis_ahead or not versioned) and await self.unsettled(
                entity, partition, pv if versioned else None):
            return "in_flight"
        if not versioned:
            if redis_version is None:
                return "missing_in_redis"
            return "missing_in_postgres" if pv is None else "differs"
        if newer:
            return "missing_in_postgres" if pv is None else "postgres_behind"
        if pv is not None and (redis_version is None or redis_version < pv):
            return "missing_in_redis" if redis_version is None else "redis_behind"
        return "differs"

    # -- repairs ----------------------------------------------------------------------
    def repaired(self, domain: str, entity: str, action: Any, detail: str) -> None:
        """Record one repair: logged at WARNING and counted in the report."""
        repair = Repair(domain=domain, entity=entity, action=action, detail=detail)
        self.repairs.append(repair)
        repair_log.warning("repair %s %s: %s (%s)", domain, entity, action, detail)
