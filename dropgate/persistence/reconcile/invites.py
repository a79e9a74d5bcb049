"""Invite codes: each code's definition, its users, and both stores' ``used_count``.

Compared as two sets over the whole scope (not code by code): definitions as
``tenant, code, max_uses, active, expires_at_ms, created_ms, used_count, version``
and uses as ``tenant, code, user``. Within each store, ``used_count`` must equal the
users it counts (Redis: SCARD of the users set; PostgreSQL: rows of
``invite_code_uses``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import decode_result
from dropgate.engine.text import text
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Scope,
)
from dropgate.persistence.reconcile.sets import (
    SetDiff,
    SqlSide,
    StreamSide,
    decode,
    diff_sets,
    encode,
    set_members,
    sql_member,
    sql_ms,
)
from dropgate.persistence.reconcile.util import (
    chunks,
    restore_entity,
    restore_in_batches,
    seen_version,
    whole_scope_guard,
)

DOMAIN = "invites"
KIND = "invite"
FIELDS = ("max_uses", "active", "expires_at_ms", "created_ms", "used_count", "version")
USERS_PER_CALL = 5_000
RESTORE_BATCH = 500


def entity_of(tenant_id: str, code: str) -> str:
    return f"{KIND}:{tenant_id}:{code}"


def _split(entity: str) -> tuple[str, str]:
    _, tenant_id, code = entity.split(":", 2)
    return tenant_id, code


def _pg_filter(scope: Scope, alias: str = "") -> tuple[str, list[Any]]:
    a = f"{alias}." if alias else ""
    if scope.entities is not None:
        pairs = [_split(e) for e in scope.entities if e.startswith(KIND + ":")]
        return (f"WHERE ({a}tenant_id, {a}code) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                [[t for t, _ in pairs], [c for _, c in pairs]])
    if scope.tenant_id is not None:
        return f"WHERE {a}tenant_id = $1", [scope.tenant_id]
    return "", []


class InviteReconciler:
    domain: str = DOMAIN
    kinds: tuple[str, ...] = (KIND,)

    def owns(self, parts: tuple[str, ...]) -> bool:
        return len(parts) >= 4 and parts[0] == "t" and parts[2] == "invite"

    # -- compare ----------------------------------------------------------------------
    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        if not scope.wants_kind(KIND):
            return out
        index = await rc.index(scope)
        targets: dict[str, tuple[str, str]] = {}
        for shape in (("t", None, "invite", None), ("t", None, "invite", None, "users")):
            for _, parts in index.find(*shape):
                entity = entity_of(parts[1], parts[3])
                if scope.wants(entity, parts[1]):
                    targets[entity] = (parts[1], parts[3])
        redis_defs: dict[str, dict[str, str]] = {}
        scards: dict[str, int] = {}
        ordered = sorted(targets.items())

        async def definitions() -> AsyncIterator[list[str]]:
            for chunk in chunks(ordered, 256):
                # MULTI: each code's hash and SCARD from the same instant
                async with rc.redis.pipeline(transaction=True) as pipe:
                    for _, (t, c) in chunk:
                        tk = rc.keys.tenant(t)
                        pipe.hgetall(tk.invite(c))
                        pipe.scard(tk.invite_users(c))
                    replies = await pipe.execute()
                batch = []
                for i, (entity, (t, c)) in enumerate(chunk):
                    raw, scard = replies[2 * i], int(replies[2 * i + 1])
                    scards[entity] = scard
                    if raw:
                        fields = {text(k): text(v) for k, v in raw.items()}
                        redis_defs[entity] = fields
                        batch.append(encode(t, c, *(fields.get(f) for f in FIELDS)))
                yield batch

        async def uses() -> AsyncIterator[list[str]]:
            keys = [(rc.keys.tenant(t).invite_users(c), encode(t, c, "")) for _, (t, c) in ordered]
            async for batch in set_members(rc.redis, keys):
                yield batch

        where, args = _pg_filter(scope)
        rc.progress.stage("invites", len(ordered))
        defs_diff, uses_diff = await asyncio.gather(
            diff_sets(StreamSide(definitions, on_batch=rc.progress.advance), SqlSide(
                rc.fetch, args=args, from_sql=f"FROM invite_codes {where}",
                member_sql=sql_member("tenant_id", "code", "max_uses", "CASE WHEN active THEN 1 ELSE 0 END",
                                      sql_ms("expires_at"), sql_ms("created_at"), "used_count", "version"))),
            diff_sets(StreamSide(uses), SqlSide(
                rc.fetch, args=args, from_sql=f"FROM invite_code_uses {where}",
                member_sql=sql_member("tenant_id", "code", "user_id"))),
        )
        pg_counters = await self._pg_counter_drift(rc, scope)
        await self._classify(rc, out, defs_diff, uses_diff, redis_defs, scards, pg_counters)
        pg_only = {entity_of(*decode(m)[:2]) for m in defs_diff.only_postgres} - redis_defs.keys()
        drifting = {d.entity for d in out.drifts}
        out.counts.append(KindCount(
            domain=DOMAIN, kind=KIND, checked=defs_diff.redis_count + len(pg_only),
            members=max(uses_diff.redis_count, uses_diff.postgres_count),
            in_flight=len(out.in_flight), drift=len(drifting)))
        return out

    async def _pg_counter_drift(self, rc: ReconcileContext, scope: Scope) -> dict[str, tuple[int, int]]:
        """PostgreSQL's used_count against its own rows: entity -> (counter, rows)."""
        where, args = _pg_filter(scope, "c")
        rows = await rc.fetch(
            f"""SELECT tenant_id, code, used_count, n FROM (
                    SELECT c.tenant_id, c.code, c.used_count,
                           (SELECT count(*) FROM invite_code_uses u
                             WHERE u.tenant_id = c.tenant_id AND u.code = c.code) AS n
                      FROM invite_codes c {where}) s
                WHERE used_count <> n""", *args)
        return {entity_of(r["tenant_id"], r["code"]): (r["used_count"], r["n"]) for r in rows}

    async def _classify(self, rc: ReconcileContext, out: Comparison, defs: SetDiff, uses: SetDiff,
                        redis_defs: dict[str, dict[str, str]], scards: dict[str, int],
                        pg_counters: dict[str, tuple[int, int]]) -> None:
        r_only = {entity_of(*decode(m)[:2]) for m in defs.only_redis}
        p_only: dict[str, dict[str, str]] = {}
        for m in defs.only_postgres:
            values = decode(m)
            p_only[entity_of(values[0], values[1])] = dict(zip(FIELDS, values[2:], strict=True))
        users_r: dict[str, list[str]] = defaultdict(list)
        users_p: dict[str, list[str]] = defaultdict(list)
        for m in uses.only_redis:
            t, c, u = decode(m)
            users_r[entity_of(t, c)].append(u)
        for m in uses.only_postgres:
            t, c, u = decode(m)
            users_p[entity_of(t, c)].append(u)
        cross = r_only | p_only.keys() | users_r.keys() | users_p.keys()
        for entity in sorted(cross):
            tenant_id, _ = _split(entity)
            r = redis_defs.get(entity)
            if entity in p_only:
                g: dict[str, str] | None = p_only[entity]
            elif entity in r_only or r is None:
                g = None
            else:
                g = r  # the definitions agree; only the uses differ
            rv = _int(r.get("version")) if r else None
            pv = _int(g.get("version")) if g else None
            # users only Redis holds, at PostgreSQL's version, are Redis ahead too (a redeem
            # after the hash was read)
            status = await rc.classify(entity, rc.keys.tenant(tenant_id).partition, rv, pv,
                                       redis_ahead=entity in users_r)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            versions: dict[str, Any] = {"redis_version": rv, "postgres_version": pv}
            if r is None and g is not None:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="invite", problem="missing_in_redis",
                                        postgres=g, detail="in PostgreSQL, not in Redis", **versions))
            elif g is None and r is not None:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="invite", problem="missing_in_postgres",
                                        redis=r, detail="in Redis, not in PostgreSQL", **versions))
            elif r is not None and g is not None and r is not g:
                differing = [f for f in FIELDS if f != "version" and (r.get(f) or "") != g[f]] or ["version"]
                for f in differing:
                    out.drifts.append(Drift(domain=DOMAIN, entity=entity, field=f, problem=status,
                                            redis=r.get(f), postgres=g[f],
                                            detail=f"{f}: Redis {r.get(f)}, PostgreSQL {g[f]}", **versions))
            if entity in users_r:
                users = sorted(users_r[entity])
                out.drifts.append(Drift(
                    domain=DOMAIN, entity=entity, field="uses", problem="missing_in_postgres", redis=users,
                    detail=f"{len(users)} uses in Redis, not in PostgreSQL: {_sample(users)}", **versions))
            if entity in users_p:
                users = sorted(users_p[entity])
                out.drifts.append(Drift(
                    domain=DOMAIN, entity=entity, field="uses", problem="missing_in_redis", postgres=users,
                    detail=f"{len(users)} uses in PostgreSQL, not in Redis: {_sample(users)}", **versions))
        for entity, fields in sorted(redis_defs.items()):
            used = _int(fields.get("used_count"))
            if used != scards.get(entity, 0):
                out.drifts.append(Drift(
                    domain=DOMAIN, entity=entity, field="used_count", problem="counter",
                    redis=used, postgres=None, redis_version=_int(fields.get("version")),
                    detail=f"Redis used_count {used}, but {scards.get(entity, 0)} users in Redis"))
        for entity, (counter, rows) in sorted(pg_counters.items()):
            out.drifts.append(Drift(
                domain=DOMAIN, entity=entity, field="used_count", problem="counter", postgres=counter,
                detail=f"PostgreSQL used_count {counter}, but {rows} use rows"))

    # -- repair -----------------------------------------------------------------------
    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """used_count := the number of use rows. The rows are locked first, so a use
        committed meanwhile (its trigger waits on the lock) is counted after ours."""
        if not scope.wants_kind(KIND):
            return
        where, args = _pg_filter(scope, "c")
        async with rc.pool.acquire() as conn, conn.transaction():
            stale = await conn.fetch(
                f"""SELECT c.tenant_id, c.code FROM invite_codes c {where}
                    {'AND' if where else 'WHERE'} c.used_count <> (SELECT count(*) FROM invite_code_uses u
                                        WHERE u.tenant_id = c.tenant_id AND u.code = c.code)
                    FOR UPDATE""", *args)
            if not stale:
                return
            fixed = await conn.fetch(
                """UPDATE invite_codes c SET used_count = s.n
                     FROM (SELECT t, k, (SELECT count(*) FROM invite_code_uses u
                                          WHERE u.tenant_id = t AND u.code = k) AS n
                             FROM unnest($1::text[], $2::text[]) AS x(t, k)) s
                    WHERE c.tenant_id = s.t AND c.code = s.k AND c.used_count <> s.n
                RETURNING c.tenant_id, c.code, s.n""",
                [r["tenant_id"] for r in stale], [r["code"] for r in stale])
        for r in fixed:
            rc.repaired(DOMAIN, entity_of(r["tenant_id"], r["code"]), "recounted",
                        f"PostgreSQL used_count := {r['n']} use rows")

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        by_entity: dict[str, list[Drift]] = defaultdict(list)
        for d in drifts:
            by_entity[d.entity].append(d)
        for entity, found in sorted(by_entity.items()):
            tenant_id, code = _split(entity)
            lacks_definition = any((d.field == "invite" and d.problem == "missing_in_postgres")
                                   or d.problem == "postgres_behind" for d in found)
            redis_only_users = next((list(d.redis) for d in found
                                     if d.field == "uses" and d.problem == "missing_in_postgres"), [])
            if lacks_definition or redis_only_users:
                await self._reemit(rc, entity, tenant_id, code, lacks_definition, redis_only_users,
                                   missing_row=any(d.field == "invite" for d in found))
                continue  # Redis is restored from PostgreSQL, if still needed, once these applied
            if any(d.problem != "counter" or d.redis is not None for d in found):
                await restore_entity(rc, DOMAIN, entity, seen_version(found), "definition and users",
                                     partial(self._restore, rc))

    async def _reemit(self, rc: ReconcileContext, entity: str, tenant_id: str, code: str,
                      definition: bool, users: list[str], *, missing_row: bool) -> None:
        tk = rc.keys.tenant(tenant_id)
        if missing_row:  # PostgreSQL lacks the code: every use with it
            users = [text(u) for u in await rc.redis.smembers(tk.invite_users(code))]
        for i, chunk in enumerate(chunks(sorted(users), USERS_PER_CALL)):
            await rc.scripts.call("resync_invite", [tk.log, tk.invite(code), tk.invite_users(code)],
                                  [rc.settings.max_backlog, tenant_id, code,
                                   "1" if definition and i == 0 else "0", *chunk])
        what = ("definition and " if definition else "") + f"{len(users)} uses"
        rc.repaired(DOMAIN, entity, "reemitted", f"{what} from Redis into the log")

    # -- restore ----------------------------------------------------------------------
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        if not scope.wants_kind(KIND):
            return 0
        return await self._restore(rc, scope, guard=whole_scope_guard(scope))

    async def _restore(self, rc: ReconcileContext, scope: Scope, *, guard: str) -> int:
        """Every code in scope from one PostgreSQL snapshot: users staged in chunks, then
        swapped in with the hash by ``restore_invite`` (guarded by ``guard``)."""
        where, args = _pg_filter(scope)
        return await restore_in_batches(
            rc, stage="restore invites", table="invite_codes", where=where, args=args,
            select=f"""tenant_id, code, max_uses, active, {sql_ms('expires_at')} AS expires_ms,
                       {sql_ms('created_at')} AS created_ms, version""",
            order_by="tenant_id, code", batch=RESTORE_BATCH,
            apply=lambda conn, rows: self._restore_batch(rc, conn, rows, guard))

    async def _restore_batch(self, rc: ReconcileContext, conn: Any, rows: list[Any], guard: str) -> int:
        users: dict[tuple[str, str], list[str]] = defaultdict(list)
        for u in await conn.fetch(
                """SELECT tenant_id, code, user_id FROM invite_code_uses
                    WHERE (tenant_id, code) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
                [r["tenant_id"] for r in rows], [r["code"] for r in rows]):
            users[(u["tenant_id"], u["code"])].append(u["user_id"])
        async with rc.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                t, c = r["tenant_id"], r["code"]
                tk = rc.keys.tenant(t)
                members = users.get((t, c), [])
                target = tk.invite_users(c)
                staging = Keys.staging(target)
                if members:
                    for i, chunk in enumerate(chunks(members, USERS_PER_CALL)):
                        await rc.scripts.queue(pipe, "restore_members", [staging],
                                               ["1" if i == 0 else "0", "set", *chunk])
                await rc.scripts.queue(pipe, "restore_invite", [tk.invite(c), target, staging], [
                    guard, t, c, r["max_uses"], len(members), "1" if r["active"] else "0",
                    "" if r["expires_ms"] is None else r["expires_ms"], r["created_ms"], r["version"]])
            replies = await pipe.execute()
        rc.progress.advance(len(rows))
        return sum(1 for raw in replies if decode_result(raw).get("restored") is True)


def _sample(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None
