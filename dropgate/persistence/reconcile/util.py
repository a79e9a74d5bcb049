"""Small helpers the domain reconcilers share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from dropgate.persistence.reconcile.base import Comparison, Drift, ReconcileContext, Scope, repair_log
from dropgate.persistence.reconcile.sets import Producer


def whole_scope_guard(scope: Scope) -> str:
    """A restore's guard: everything (``*``: replace whatever Redis holds) for a full
    restore, ``-`` (only what Redis lacks) when entities are named."""
    return "*" if scope.entities is None else "-"


def seen_version(found: Sequence[Drift]) -> int | None:
    """The Redis version the comparison saw for an entity (its drifts'), if any."""
    return next((d.redis_version for d in found if d.redis_version is not None), None)


async def restore_entity(rc: ReconcileContext, domain: str, entity: str, version: int | None, what: str,
                         restore: Callable[..., Awaitable[int]]) -> None:
    """Repair by restore (``restore(scope, guard=...)``): Redis := PostgreSQL for one
    entity, guarded by the Redis ``version`` the comparison saw (``-``: it saw none),
    so a writer that moved the entity meanwhile wins and the repair is skipped (and
    logged) instead of undoing that write."""
    guard = str(version) if version is not None else "-"
    if await restore(Scope(entities=frozenset({entity})), guard=guard):
        rc.repaired(domain, entity, "restored", f"Redis := PostgreSQL ({what})")
    else:
        repair_log.warning("repair %s %s: skipped, it changed in Redis meanwhile", domain, entity)


async def restore_in_batches(rc: ReconcileContext, *, stage: str, table: str, where: str, args: list[Any],
                             select: str, order_by: str, batch: int,
                             apply: Callable[[Any, list[Any]], Awaitable[int]]) -> int:
    """Stream ``SELECT {select} FROM {table} {where} ORDER BY {order_by}`` from one
    read-only snapshot (the progress bar sized by a count of the same rows) and hand
    it to ``apply(conn, rows)`` ``batch`` rows at a time, inside that snapshot; the
    restored count summed."""
    restored = 0
    async with rc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"SELECT count(*) FROM {table} {where}", *args)
        rc.progress.stage(stage, int(total))
        rows: list[Any] = []
        async for row in conn.cursor(f"SELECT {select} FROM {table} {where} ORDER BY {order_by}", *args):
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


def pg_filter(scope: Scope, kind: str, columns: Sequence[str], alias: str = "") -> tuple[str, list[Any]]:
    """WHERE clause of a domain's SQL for the scope: exact entities (``kind:tenant:id``
    split on ``:`` into ``columns``), a tenant, or everything."""
    a = f"{alias}." if alias else ""
    cols = [f"{a}{c}" for c in columns]
    if scope.entities is not None:
        parts = [e.split(":", len(columns))[1:] for e in scope.entities if e.startswith(kind + ":")]
        arrays = [[p[i] for p in parts] for i in range(len(columns))]
        unnest = ", ".join(f"${i + 1}::text[]" for i in range(len(columns)))
        return f"WHERE ({', '.join(cols)}) IN (SELECT * FROM unnest({unnest}))", arrays
    if scope.tenant_id is not None:
        return f"WHERE {cols[0]} = $1", [scope.tenant_id]
    return "", []


def and_where(where: str) -> str:
    return "AND" if where else "WHERE"


def field_drifts(out: Comparison, domain: str, entity: str, kind: str, problem: Any,
                 r: dict[str, str] | None, g: dict[str, str] | None, fields: Sequence[str],
                 rv: int | None, pv: int | None) -> None:
    """One drift for a definition only one store has, or one per differing field."""
    versions: dict[str, Any] = {"redis_version": rv, "postgres_version": pv}
    if r is None and g is not None:
        out.drifts.append(Drift(domain=domain, entity=entity, field=kind, problem="missing_in_redis",
                                postgres=g, detail="in PostgreSQL, not in Redis", **versions))
    elif g is None and r is not None:
        out.drifts.append(Drift(domain=domain, entity=entity, field=kind, problem="missing_in_postgres",
                                redis=r, detail="in Redis, not in PostgreSQL", **versions))
    elif r is not None and g is not None and r is not g:
        differing = [f for f in fields if f != "version" and (r.get(f) or "") != (g.get(f) or "")] or ["version"]
        for f in differing:
            out.drifts.append(Drift(domain=domain, entity=entity, field=f, problem=problem,
                                    redis=r.get(f), postgres=g.get(f),
                                    detail=f"{f}: Redis {r.get(f)}, PostgreSQL {g.get(f)}", **versions))

