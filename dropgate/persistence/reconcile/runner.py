"""``dropgate reconcile``: compare at a consistent point, confirm, optionally repair.

A comparison runs in rounds. Round 1 compares everything in scope; each difference
is either *in flight* (Redis is ahead and the log still holds a newer event of the
entity) or a drift candidate. Then the runner waits (``wait_s``, bounded) for the
persister to commit what was in the log when round 1 started, and rechecks only the
suspects; a drift counts once two consecutive rounds report it. So a reconcile under
load reports what is really wrong, and one after the load reports exactly.

Repair (``--repair``) follows docs/reconcile.md's policy, every action logged and
counted: replay the log, recount PostgreSQL's counters, re-emit what only Redis holds,
restore what PostgreSQL holds; the last two repeat (three rounds at most) until a
comparison finds no drift.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

import asyncpg
import msgspec
from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.keyspace import Progress
from dropgate.engine.scripts import Scripts
from dropgate.errors import DropgateError
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile import RECONCILERS
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Repair,
    Scope,
    entity_kind,
    log,
)
from dropgate.persistence.reconcile.generic import SpecReconciler as Reconciler
from dropgate.persistence.watermark import log_heads, log_lengths, wait_committed
from dropgate.settings import Settings

RECHECK_ROUNDS = 3
REPAIR_ROUNDS = 3


class Stores(Protocol):
    """What reconcile and restore need of a ``Runtime``."""

    redis: Redis
    pool: asyncpg.Pool
    database_url: str
    keys: Keys
    scripts: Scripts
    settings: Settings


class DeadLetter(msgspec.Struct, kw_only=True):
    partition: int
    stream_id: str
    event_type: str
    entity: str
    error: str
    attempts: int
    failed_at: str


class Report(msgspec.Struct, kw_only=True):
    """What ``dropgate reconcile --json`` prints."""

    result: Literal["agree", "drift", "error"]
    exit_code: int
    key_prefix: str = ""
    partitions: int = 0
    tenant: str | None = None
    entities: list[str] = []
    counts: list[KindCount] = []
    drifts: list[Drift] = []
    in_flight: list[str] = []
    backlog: int = 0
    dead_letters: int = 0
    dead_letter_sample: list[DeadLetter] = []
    drifts_before_repair: list[Drift] | None = None
    repairs: list[Repair] = []
    repaired: dict[str, int] = {}
    elapsed_s: float = 0.0
    error: str | None = None


class ReplayTimeout(Exception):
    pass


def make_scope(tenant_id: str | None, entities: Sequence[str],
               reconcilers: Sequence[Reconciler] = RECONCILERS) -> Scope:
    """``--entity`` values are kinds (``invite``) or entity ids (``invite:acme:LAUNCH``)."""
    known = {k for r in reconcilers for k in r.kinds}
    kinds = {e for e in entities if ":" not in e}
    exact = {e for e in entities if ":" in e}
    unknown = (kinds | {entity_kind(e) for e in exact}) - known
    if unknown:
        raise ValueError(f"unknown entity kind {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    all_kinds = kinds | {entity_kind(e) for e in exact}
    return Scope(tenant_id=tenant_id, kinds=frozenset(all_kinds) or None, entities=frozenset(exact) or None)


def context(stores: Stores, progress: Progress | None = None) -> ReconcileContext:
    return ReconcileContext(redis=stores.redis, pool=stores.pool, database_url=stores.database_url,
                            keys=stores.keys, scripts=stores.scripts,
                            settings=stores.settings, progress=progress)


async def reconcile(stores: Stores, *, tenant_id: str | None = None, entities: Sequence[str] = (),
                    repair: bool = False, wait_s: float = 10.0, progress: Progress | None = None,
                    reconcilers: Sequence[Reconciler] = RECONCILERS) -> Report:
    started = time.monotonic()
    base: dict[str, Any] = {"key_prefix": stores.keys.prefix, "partitions": stores.keys.partitions,
            "tenant": tenant_id, "entities": list(entities)}
    try:
        scope = make_scope(tenant_id, entities, reconcilers)
    except ValueError as exc:
        return Report(result="error", exit_code=2, error=str(exc), **base)
    selected = [r for r in reconcilers if scope.kinds is None or set(r.kinds) & scope.kinds]
    rc = context(stores, progress)
    if tenant_id is not None:
        refused = await _unknown_tenant(stores, tenant_id)
        if refused is not None:  # checking nothing must not read as "agree"
            return Report(result="error", exit_code=2, error=refused, **base)
    try:
        comparison = await compare_settled(rc, selected, scope, wait_s=wait_s)
        before: list[Drift] | None = None
        if repair and comparison.drifts:
            before = comparison.drifts
            comparison = await repair_drift(rc, selected, scope, wait_s=wait_s)
        backlog, dead, sample = await _pipeline_health(rc, tenant_id)
    except Exception as exc:  # could not run: a store is down, a timeout, a bug
        log.exception("reconcile could not run")
        return Report(result="error", exit_code=2, error=f"{type(exc).__name__}: {exc}",
                      repairs=rc.repairs, elapsed_s=round(time.monotonic() - started, 3), **base)
    drift = bool(comparison.drifts)
    return Report(
        result="drift" if drift else "agree", exit_code=1 if drift else 0,
        counts=comparison.counts, drifts=comparison.drifts, in_flight=sorted(comparison.in_flight),
        backlog=backlog, dead_letters=dead, dead_letter_sample=sample, drifts_before_repair=before,
        repairs=rc.repairs, repaired=dict(Counter(r.action for r in rc.repairs)),
        elapsed_s=round(time.monotonic() - started, 3), **base)


# -- comparing ----------------------------------------------------------------------------

async def compare_all(rc: ReconcileContext, reconcilers: Iterable[Reconciler], scope: Scope) -> Comparison:
    """One round: PostgreSQL's snapshot first, then every reconciler reads Redis."""
    await rc.begin_round()
    merged = Comparison()
    try:
        for r in reconcilers:
            part = await r.compare(rc, scope)
            merged.counts += part.counts
            merged.drifts += part.drifts
            merged.in_flight |= part.in_flight
    finally:
        await rc.end_round()
    return merged


def _key(d: Drift) -> tuple[str, str, str]:
    return d.entity, d.field, d.problem


async def compare_settled(rc: ReconcileContext, reconcilers: Sequence[Reconciler], scope: Scope, *,
                          wait_s: float) -> Comparison:
    """Compare, then recheck the suspects until each drift is seen twice in a row."""
    heads = await log_heads(rc.redis, rc.keys)
    first = await compare_all(rc, reconcilers, scope)
    in_flight = set(first.in_flight)
    candidates = first.drifts
    confirmed: dict[tuple[str, str, str], Drift] = {}
    for round_no in range(RECHECK_ROUNDS):
        suspects = {d.entity for d in candidates} | (in_flight if round_no == 0 else set())
        if not suspects:
            break
        if round_no == 0:
            await wait_committed(rc.redis, rc.pool, rc.keys, heads, timeout_s=wait_s, still_s=3.0)
        else:
            await asyncio.sleep(0.1)
        again = await compare_all(rc, reconcilers, scope.narrowed(suspects))
        in_flight = (in_flight - suspects) | again.in_flight
        previous = {_key(d) for d in candidates}
        candidates = []
        for d in again.drifts:
            if _key(d) in previous:
                confirmed[_key(d)] = d
            else:
                candidates.append(d)
    drifts = sorted([*confirmed.values(), *candidates], key=lambda d: (d.entity, d.field))
    counts = []
    for c in first.counts:
        kind_drift = {d.entity for d in drifts if d.kind == c.kind and d.domain == c.domain}
        counts.append(KindCount(domain=c.domain, kind=c.kind, checked=c.checked, members=c.members,
                                in_flight=sum(1 for e in in_flight if entity_kind(e) == c.kind),
                                drift=len(kind_drift)))
    return Comparison(counts=counts, drifts=drifts, in_flight=in_flight)


async def _unknown_tenant(stores: Stores, tenant_id: str) -> str | None:
    """Why ``--tenant`` names no tenant to check (malformed, or in neither store), or None."""
    try:
        tenant_key = stores.keys.tenant(tenant_id).tenant()
    except DropgateError:
        return f"--tenant {tenant_id!r} is not a tenant id (1-64 characters of [A-Za-z0-9_.-])"
    in_redis = bool(await stores.redis.exists(tenant_key))
    in_postgres = in_redis or bool(await stores.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)", tenant_id))
    if not (in_redis or in_postgres):
        return f"--tenant {tenant_id!r}: no such tenant in Redis or PostgreSQL"
    return None


async def _pipeline_health(rc: ReconcileContext, tenant_id: str | None) -> tuple[int, int, list[DeadLetter]]:
    backlog = sum((await log_lengths(rc.redis, rc.keys)).values())
    where, args = ("WHERE split_part(entity, ':', 2) = $1", [tenant_id]) if tenant_id else ("", [])
    dead = int(await rc.pool.fetchval(f"SELECT count(*) FROM dg_dead_letters {where}", *args))
    rows = await rc.pool.fetch(
        f"""SELECT partition, stream_id, event_type, entity, error, attempts, failed_at
              FROM dg_dead_letters {where} ORDER BY failed_at DESC LIMIT 10""", *args)
    sample = [DeadLetter(partition=r["partition"], stream_id=r["stream_id"], event_type=r["event_type"],
                         entity=r["entity"], error=r["error"], attempts=r["attempts"],
                         failed_at=r["failed_at"].isoformat()) for r in rows]
    return backlog, dead, sample


# -- repairing ----------------------------------------------------------------------------

async def replay(rc: ReconcileContext, *, timeout_s: float = 120.0) -> int:
    """Policy step 1: get every event now in the log committed to PostgreSQL. Runs a
    persister for the partitions no other persister holds (a running ``serve`` keeps its
    own) and waits until the committed offsets reach the log's current heads."""
    heads = await log_heads(rc.redis, rc.keys)
    if not heads:
        return 0
    lengths = await log_lengths(rc.redis, rc.keys)
    persister = Persister(redis=rc.redis, pool=rc.pool, keys=rc.keys, scripts=rc.scripts,
                          settings=rc.settings, name=f"reconcile-{os.getpid()}")
    task = asyncio.create_task(persister.run(), name="reconcile-replay")
    try:
        # a dead persister's partitions free up once its lease lapses
        still_s = rc.settings.persister_lease_ms / 1000 + 5.0
        if await wait_committed(rc.redis, rc.pool, rc.keys, heads, timeout_s=timeout_s, still_s=still_s):
            raise ReplayTimeout(f"the log was not committed within {timeout_s:.0f}s (is PostgreSQL up?)")
    finally:
        await persister.close()
        try:
            await asyncio.wait_for(task, timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
    replayed = 0
    for p in heads:
        if lengths[p]:
            replayed += lengths[p]
            rc.repaired("log", f"partition:{p}", "replayed", f"{lengths[p]} events committed to PostgreSQL")
    return replayed


async def repair_drift(rc: ReconcileContext, reconcilers: Sequence[Reconciler], scope: Scope, *,
                       wait_s: float) -> Comparison:
    await replay(rc)
    for r in reconcilers:
        await r.recount(rc, scope)
    comparison = await compare_settled(rc, reconcilers, scope, wait_s=wait_s)
    for _ in range(REPAIR_ROUNDS):
        if not comparison.drifts:
            break
        for r in reconcilers:
            mine = [d for d in comparison.drifts if d.domain == r.domain and d.kind in r.kinds]
            if mine:
                await r.repair(rc, mine)
        await replay(rc)
        comparison = await compare_settled(rc, reconcilers, scope, wait_s=wait_s)
    return comparison
