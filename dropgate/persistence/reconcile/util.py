"""Small helpers the reconcilers share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from dropgate.persistence.reconcile.base import Comparison, Drift, ReconcileContext
from dropgate.persistence.setdiff import Producer
from dropgate.specs import Entity


async def restore_in_batches(rc: ReconcileContext, *, stage: str, table: str, where: str, args: list[Any],
                             select: str, batch: int,
                             apply: Callable[[Any, list[Any]], Awaitable[int]]) -> int:
    """Stream ``SELECT {select} FROM {table} {where}`` from one read-only snapshot (the
    progress bar sized by a count of the same rows) and hand it to ``apply(conn, rows)``
    ``batch`` rows at a time, inside that snapshot; the restored count summed.

    In no order: each row is one entity, restored whole with its members (read by its
    batch's owners), so the order changes nothing restored, and an order the table's
    primary key does not give (offer_purchases' leads with the purchase id, migration
    0024) would sort a whole table before the first row, when Redis is down."""
    restored = 0
    async with rc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"SELECT count(*) FROM {table} {where}", *args)
        rc.progress.stage(stage, int(total))
        rows: list[Any] = []
        async for row in conn.cursor(f"SELECT {select} FROM {table} {where}", *args):
            rows.append(row)
            if len(rows) >= batch:
                restored += await apply(conn, rows)
                rows = []
        if rows:
            restored += await apply(conn, rows)
    return restored


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def sample(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def to_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def listed(members: list[str]) -> Producer:
    """A producer over members already read (one MULTI per entity): one batch per pass."""

    async def produce() -> AsyncIterator[list[str]]:
        for start in range(0, len(members), 10_000):
            yield members[start:start + 10_000]

    return produce


def field_drifts(out: Comparison, spec: Entity, entity: str, problem: Any, r: dict[str, str] | None,
                 g: dict[str, str] | None, rv: int | None, pv: int | None) -> None:
    """One drift for an entity only one store has, or one per differing field (a
    secret field's values are not reported)."""
    versions: dict[str, Any] = {"redis_version": rv, "postgres_version": pv}
    shown = {f.name for f in spec.compared() if not f.secret}
    if r is None and g is not None:
        out.drifts.append(Drift(domain=spec.domain, entity=entity, field=spec.kind, problem="missing_in_redis",
                                postgres={k: v for k, v in g.items() if k in shown},
                                detail="in PostgreSQL, not in Redis", **versions))
    elif g is None and r is not None:
        out.drifts.append(Drift(domain=spec.domain, entity=entity, field=spec.kind, problem="missing_in_postgres",
                                redis={k: v for k, v in r.items() if k in shown},
                                detail="in Redis, not in PostgreSQL", **versions))
    elif r is not None and g is not None and r is not g:
        names = [f.name for f in spec.compared()]
        differing = [f for f in names if f != "version" and (r.get(f) or "") != (g.get(f) or "")] or ["version"]
        for f in differing:
            rf, gf = (r.get(f), g.get(f)) if f in shown else ("***", "***")
            out.drifts.append(Drift(domain=spec.domain, entity=entity, field=f, problem=problem, redis=rf,
                                    postgres=gf, detail=f"{f}: Redis {rf}, PostgreSQL {gf}", **versions))


def only_in(domain: str, entity: str, name: str, side: str, items: list[str], **versions: Any) -> Drift:
    """Members (``name``) of an entity that only one store (``side``) holds."""
    sides: dict[str, Any] = {side: items}
    return Drift(domain=domain, entity=entity, field=name, **sides, **versions,
                 problem="missing_in_postgres" if side == "redis" else "missing_in_redis",
                 detail=f"{len(items)} {name} only in {'Redis' if side == 'redis' else 'PostgreSQL'}: {sample(items)}")
