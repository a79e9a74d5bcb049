"""Recount, repair and restore of the generic reconciler, driven by the entity specs,
by docs/reconcile.md's policy. Restore rebuilds an entity from one PostgreSQL snapshot:
its collections are staged, then swapped in with its hash in one step (guarded by the
Redis version seen)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import decode_result
from dropgate.ids import text
from dropgate.persistence.reconcile.base import Drift, ReconcileContext, Scope, entity_kind, repair_log
from dropgate.persistence.reconcile.sql import and_where, parts_of, row_sql, scope_sql, stale_sql
from dropgate.persistence.reconcile.util import chunks, restore_in_batches, to_int
from dropgate.specs import Entity, Members

PER_CALL = 5_000
RESTORE_BATCH = 200


def reemit_chunk(rc: ReconcileContext, most: int = PER_CALL) -> int:
    """Members per resync call: a call needs room under the backlog bound for all it appends."""
    return max(1, min(most, rc.settings.max_backlog // 4))


class SpecBase:
    """Keys, recount, repair and restore of the kinds of ``specs`` (one domain)."""

    def __init__(self, *specs: Entity) -> None:
        self.specs = specs
        self.domain = specs[0].domain
        self.kinds = tuple(s.kind for s in specs)

    def spec(self, kind: str) -> Entity:
        return next(s for s in self.specs if s.kind == kind)

    # -- keys -------------------------------------------------------------------------
    def partition(self, rc: ReconcileContext, spec: Entity, parts: list[str]) -> int:
        return rc.keys.api_key(parts[0])[0] if spec.global_ else rc.keys.tenant(parts[0]).partition

    def key(self, rc: ReconcileContext, spec: Entity, parts: list[str], method: str | None = None) -> str:
        if spec.global_:
            return rc.keys.api_key(parts[0])[1]
        ids: list[Any] = [int(v) if f.redis == "ms" else v for f, v in zip(spec.ids, parts[1:], strict=True)]
        return str(getattr(rc.keys.tenant(parts[0]), method or spec.key)(*ids))

    # -- repair -----------------------------------------------------------------------
    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """Counters := their rows, for the stale rows only. They are locked first, so a
        row committed meanwhile (its trigger waits on the lock) is counted after ours."""
        for spec in self.specs:
            if not spec.counts or not scope.wants_kind(spec.kind):
                continue
            where, args = scope_sql(spec, scope)
            stale = f"{where} {and_where(where)} ({stale_sql(spec)})"
            sets = ", ".join(f"{c.col} = {c.sql(spec, 'c')}" for c in spec.counts)
            ids = ", ".join(f"{e} AS _{i}" for i, e in enumerate(spec.id_exprs("c")))
            async with rc.pool.acquire() as conn, conn.transaction():
                if not await conn.fetch(f"SELECT 1 FROM {spec.table} c {stale} FOR UPDATE", *args):
                    continue
                if spec.recount_setting:
                    await conn.execute(f"SELECT set_config('{spec.recount_setting}', 'on', true)")
                fixed = await conn.fetch(f"UPDATE {spec.table} c SET {sets} {stale} RETURNING {ids}, "
                                         + ", ".join(f"c.{c.col}" for c in spec.counts), *args)
                if spec.recount_setting:
                    await conn.execute(f"SELECT set_config('{spec.recount_setting}', 'off', true)")
            for r in fixed:
                what = ", ".join(f"{c.field} := {r[c.col]}" for c in spec.counts)
                rc.repaired(spec.domain, spec.entity(*parts_of(r, spec)), "recounted",
                            f"PostgreSQL {what} from the {spec.counts[0].rows}")

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        by_entity: dict[str, list[Drift]] = defaultdict(list)
        for d in drifts:
            by_entity[d.entity].append(d)
        for entity, found in sorted(by_entity.items()):
            if all(d.problem == "counter" and d.redis is None for d in found):
                continue  # PostgreSQL's counters: recount did it
            spec = self.spec(entity_kind(entity))
            await self.repair_entity(rc, spec, entity, found)

    async def repair_entity(self, rc: ReconcileContext, spec: Entity, entity: str, found: list[Drift]) -> None:
        parts = spec.split(entity)
        missing_row = any(d.field == spec.kind and d.problem == "missing_in_postgres" for d in found)
        lacks_definition = missing_row or any(d.problem == "postgres_behind" for d in found)
        redis_only = sorted({m for d in found if d.problem == "missing_in_postgres" and d.field != spec.kind
                             and isinstance(d.redis, list) for m in d.redis})
        if missing_row and spec.where and await rc.pool.fetchval(
                f"SELECT count(*) FROM {spec.table} c WHERE ({', '.join(spec.id_exprs('c'))}) = "
                f"({', '.join(f'${i + 1}' for i in range(len(parts)))})", *parts):
            await rc.scripts.call("restore_hash", [self.key(rc, spec, parts)], ["*", "replace", ""])
            rc.repaired(spec.domain, entity, "deleted_from_redis", "not live in PostgreSQL")
            return
        if (lacks_definition or redis_only) and spec.resync:
            await self.reemit(rc, spec, entity, parts, lacks_definition, redis_only, missing_row=missing_row)
            return  # restored next round, if still needed, once these applied
        await self.restore_one(rc, spec, entity, found)

    async def reemit(self, rc: ReconcileContext, spec: Entity, entity: str, parts: list[str], definition: bool,
                     members: list[str], *, missing_row: bool) -> None:
        """Redis' state of the entity (and of members PostgreSQL lacks) into the log."""
        log = rc.keys.log(self.partition(rc, spec, parts))
        keys = [log, self.key(rc, spec, parts)]
        args: list[Any] = [rc.settings.max_backlog, *spec.resync[1:], *parts]
        if not spec.members:
            await rc.scripts.call(spec.resync[0], keys, args)
            rc.repaired(spec.domain, entity, "reemitted", f"{spec.kind} from Redis into the log")
            return
        collection = self.key(rc, spec, parts, spec.members[0].key)
        if missing_row:  # PostgreSQL lacks the entity: every member with it
            raw = await (rc.redis.smembers(collection) if spec.members[0].redis == "set"
                         else rc.redis.hkeys(collection))
            members = sorted(text(m) for m in raw)
        for i, chunk in enumerate(chunks(members, reemit_chunk(rc))):
            await rc.scripts.call(spec.resync[0], [*keys, collection],
                                  [*args, "1" if definition and i == 0 else "0", *chunk])
        what = ("definition and " if definition else "") + f"{len(members)} {spec.members[0].name}"
        rc.repaired(spec.domain, entity, "reemitted", f"{what} from Redis into the log")

    async def restore_one(self, rc: ReconcileContext, spec: Entity, entity: str, found: list[Drift]) -> None:
        """Redis := PostgreSQL for one entity, guarded by the Redis version the comparison
        saw (or, without versions, the current one), so a writer that moved the entity
        meanwhile wins and the repair is skipped (and logged) instead of undoing it."""
        seen = next((d.redis_version for d in found if d.redis_version is not None), None)
        if not spec.versioned:
            seen = to_int(await rc.redis.hget(self.key(rc, spec, spec.split(entity)), "version"))
            guard = "*" if seen is None else str(seen)
        else:
            guard = "-" if seen is None else str(seen)
        if await self.restore_kind(rc, spec, Scope(entities=frozenset({entity})), guard=guard):
            rc.repaired(spec.domain, entity, "restored", "Redis := PostgreSQL")
        else:
            repair_log.warning("repair %s %s: skipped, it changed in Redis meanwhile", spec.domain, entity)

    # -- restore ----------------------------------------------------------------------
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        guard = "*" if scope.entities is None else "-"
        return sum([await self.restore_kind(rc, s, scope, guard=guard) for s in self.specs
                    if scope.wants_kind(s.kind)])

    async def restore_kind(self, rc: ReconcileContext, spec: Entity, scope: Scope, *, guard: str) -> int:
        """Every entity in scope from one PostgreSQL snapshot, in batches: collections
        staged, then swapped in with the hash (``restore_swap``), or the hash alone
        (``restore_hash``), guarded by ``guard``."""
        where, args = scope_sql(spec, scope)
        return await restore_in_batches(
            rc, stage=f"restore {spec.kind}s", table=f"{spec.table} c", where=where, args=args,
            select=row_sql(spec), batch=RESTORE_BATCH,
            apply=lambda conn, rows: self.restore_rows(rc, spec, conn, rows, guard))

    async def member_rows(self, conn: Any, spec: Entity, m: Members,
                          rows: list[Any]) -> dict[tuple[str, ...], list[Any]]:
        """The members of a batch of entities, by their owner's parts."""
        owners = [parts_of(r, spec) for r in rows]
        cols = ", ".join(f"u.{c}" for c in m.link)
        values = [f"{f.expr('u')} AS {f.name}" for f in (*m.fields, *((m.score,) if m.score else ()))]
        unnest = ", ".join(f"${i + 1}::text[]" for i in range(len(m.link)))
        cond = f" AND {m.where.replace('{a}', 'u.')}" if m.where else ""
        out: dict[tuple[str, ...], list[Any]] = defaultdict(list)
        for u in await conn.fetch(
                f"SELECT {cols}, u.{m.id} AS _id{''.join(', ' + v for v in values)} FROM {m.table} u "
                f"WHERE ({cols}) IN (SELECT * FROM unnest({unnest})){cond}",
                *([o[i] for o in owners] for i in range(len(m.link)))):
            out[tuple(str(u[c]) for c in m.link)].append(u)
        return out

    async def restore_rows(self, rc: ReconcileContext, spec: Entity, conn: Any, rows: list[Any], guard: str) -> int:
        members = {m.name: await self.member_rows(conn, spec, m, rows) for m in spec.members}
        related = await self.related_rows(conn, rows)
        async with rc.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                parts = parts_of(r, spec)
                pairs: list[Any] = []
                for f in spec.fields:
                    if f.restored and (r[f.name] is not None or spec.merge):
                        pairs += [f.name, "" if r[f.name] is None else r[f.name]]
                key = self.key(rc, spec, parts)
                if not spec.members:
                    await rc.scripts.queue(pipe, spec.restore, [key],
                                           [guard, "merge" if spec.merge else "replace", "", *pairs])
                    continue
                swap: list[tuple[str, str, str]] = []
                for m in spec.members:
                    mine = members[m.name].get(tuple(parts), [])
                    swap += await self._stage(rc, pipe, spec, m, parts, mine)
                mirror = await self.stage_related(rc, pipe, spec, parts, r, related, swap)
                swap += [(swap[0][1], swap[0][1], "-")] * (5 - len(swap))
                await rc.scripts.queue(pipe, spec.restore, [key, *(k for t, s, _ in swap for k in (t, s))],
                                       [guard, "".join(mode for *_, mode in swap), mirror, *pairs])
            replies = await pipe.execute()
        rc.progress.advance(len(rows))
        return sum(1 for raw in replies if isinstance(raw, bytes) and decode_result(raw).get("restored") is True)

    async def related_rows(self, conn: Any, rows: list[Any]) -> Any:
        """Rows of other entities restored with these (offers: their purchases)."""
        return None

    async def stage_related(self, rc: ReconcileContext, pipe: Any, spec: Entity, parts: list[str], row: Any,
                            related: Any, swap: list[tuple[str, str, str]]) -> str:
        """Stage what else the entity's swap applies (offers); the mirror prefix of mode 'x'."""
        return ""

    async def _stage(self, rc: ReconcileContext, pipe: Any, spec: Entity, m: Members, parts: list[str],
                     rows: list[Any]) -> list[tuple[str, str, str]]:
        """Queue one collection (and its tally) into staging keys: (target, staged, 'r') each."""
        target = self.key(rc, spec, parts, m.key)
        if m.redis == "set":
            items = [u["_id"] for u in rows]
        elif m.score is not None:
            items = [x for u in rows for x in (u[m.score.name], u["_id"])]
        else:
            items = [x for u in rows for x in (u["_id"], json.dumps({f.name: u[f.name] for f in m.fields},
                                                                     separators=(",", ":")))]
        out = [await stage(rc, pipe, target, m.redis, items)]
        if m.tally:
            tally = Counter(u[m.tally[2]] for u in rows)
            out.append(await stage(rc, pipe, self.key(rc, spec, parts, m.tally[1]), "hash",
                                   [x for kv in tally.items() for x in kv]))
        return out


async def stage(rc: ReconcileContext, pipe: Any, target: str, kind: str, items: list[Any], *,
                staging: str | None = None, mode: str = "r", fresh: bool = True) -> tuple[str, str, str]:
    """Queue ``items`` (members, or score/member or field/value pairs) into a staging
    key (``target``'s; emptied first if ``fresh``), a bounded chunk per call; (target,
    staged, mode) for restore_swap."""
    staging = staging or Keys.staging(target)
    step = PER_CALL * (1 if kind == "set" else 2)
    for i, chunk in enumerate(chunks(items, step) if items else []):
        await rc.scripts.queue(pipe, "restore_members", [staging], ["1" if fresh and i == 0 else "0", kind, *chunk])
    return target, staging, mode
