"""Promo codes: each code's definition and counters, its use records, per-customer counts.

Compared as two sets over the scope: definitions (``tenant, code, kind, amount,
percent, currency, max_uses, per_customer_limit, starts_ms, ends_ms, active,
created_ms, times_used, total_bonus_issued, version``) and uses (``tenant, code,
use_id, customer, base, bonus, at_ms``). Within each store the counters must equal
the uses they count: Redis' ``times_used`` / ``total_bonus_issued`` / customers hash
against its use records (read in one MULTI with them), PostgreSQL's trigger-kept
``times_used`` / ``total_bonus_issued`` against ``promo_code_uses``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from functools import partial
from typing import Any

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import decode_result
from dropgate.ids import text
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Scope,
)
from dropgate.persistence.reconcile.sets import (
    SqlSide,
    StreamSide,
    decode,
    diff_sets,
    encode,
    sql_member,
    sql_ms,
)
from dropgate.persistence.reconcile.util import (
    and_where,
    chunks,
    field_drifts,
    listed,
    pg_filter,
    restore_entity,
    restore_in_batches,
    sample,
    seen_version,
    to_int,
    whole_scope_guard,
)

DOMAIN = "promos"
KIND = "promo"
FIELDS = ("kind", "amount", "percent", "currency", "max_uses", "per_customer_limit", "starts_at_ms",
          "ends_at_ms", "active", "created_ms", "times_used", "total_bonus_issued", "version")
PG_FIELDS = ("bonus_kind", "bonus_amount", "bonus_percent", "currency", "max_uses", "per_customer_limit",
             sql_ms("starts_at"), sql_ms("ends_at"), "CASE WHEN active THEN 1 ELSE 0 END", sql_ms("created_at"),
             "times_used", "total_bonus_issued", "version")
PER_CALL = 5_000
RESTORE_BATCH = 200


def entity_of(tenant_id: str, code: str) -> str:
    return f"{KIND}:{tenant_id}:{code}"


def _split(entity: str) -> tuple[str, str]:
    _, tenant_id, code = entity.split(":", 2)
    return tenant_id, code


def _filter(scope: Scope, alias: str = "") -> tuple[str, list[Any]]:
    return pg_filter(scope, KIND, ("tenant_id", "code"), alias)


class PromoReconciler:
    domain: str = DOMAIN
    kinds: tuple[str, ...] = (KIND,)

    def owns(self, parts: tuple[str, ...]) -> bool:
        return len(parts) >= 4 and parts[0] == "t" and parts[2] == "promo"

    # -- compare ----------------------------------------------------------------------
    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        if not scope.wants_kind(KIND):
            return out
        index = await rc.index(scope)
        targets: dict[str, tuple[str, str]] = {}
        for shape in (("t", None, "promo", None), ("t", None, "promo", None, "uses"),
                      ("t", None, "promo", None, "customers")):
            for _, parts in index.find(*shape):
                entity = entity_of(parts[1], parts[3])
                if scope.wants(entity, parts[1]):
                    targets[entity] = (parts[1], parts[3])
        ordered = sorted(targets.items())
        rc.progress.stage("promos", len(ordered))
        redis_defs: dict[str, dict[str, str]] = {}
        defs: list[str] = []
        uses: list[str] = []
        counter_drift: list[Drift] = []
        for chunk in chunks(ordered, 128):
            # MULTI: each code's hash, uses and customers from the same instant
            async with rc.redis.pipeline(transaction=True) as pipe:
                for _, (t, c) in chunk:
                    tk = rc.keys.tenant(t)
                    pipe.hgetall(tk.promo(c))
                    pipe.hgetall(tk.promo_uses(c))
                    pipe.hgetall(tk.promo_customers(c))
                replies = await pipe.execute()
            for i, (entity, (t, c)) in enumerate(chunk):
                raw, raw_uses, raw_customers = replies[3 * i:3 * i + 3]
                fields = {text(k): text(v) for k, v in raw.items()}
                records = {text(k): json.loads(v) for k, v in raw_uses.items()}
                customers = {text(k): int(v) for k, v in raw_customers.items()}
                for use_id, u in records.items():
                    uses.append(encode(t, c, use_id, u["customer_id"], u["base_amount"], u["bonus_amount"],
                                       u["at_ms"]))
                if fields:
                    redis_defs[entity] = fields
                    defs.append(encode(t, c, *(fields.get(f) for f in FIELDS)))
                    counter_drift += _redis_counters(entity, fields, records, customers)
            rc.progress.advance(len(chunk))
        where, args = _filter(scope)
        defs_diff, uses_diff = await asyncio.gather(
            diff_sets(StreamSide(listed(defs)), SqlSide(
                rc.fetch, args=args, from_sql=f"FROM promo_codes {where}",
                member_sql=sql_member("tenant_id", "code", *PG_FIELDS))),
            diff_sets(StreamSide(listed(uses)), SqlSide(
                rc.fetch, args=args, from_sql=f"FROM promo_code_uses {where}",
                member_sql=sql_member("tenant_id", "code", "use_id", "customer_id", "base_amount",
                                      "bonus_amount", sql_ms("used_at")))),
        )
        r_only = {entity_of(*decode(m)[:2]) for m in defs_diff.only_redis}
        p_only: dict[str, dict[str, str]] = {}
        for m in defs_diff.only_postgres:
            values = decode(m)
            p_only[entity_of(values[0], values[1])] = dict(zip(FIELDS, values[2:], strict=True))
        uses_r: dict[str, list[str]] = defaultdict(list)
        uses_p: dict[str, list[str]] = defaultdict(list)
        for members, into in ((uses_diff.only_redis, uses_r), (uses_diff.only_postgres, uses_p)):
            for m in members:
                t, c, use_id, *_ = decode(m)
                into[entity_of(t, c)].append(use_id)
        for entity in sorted(r_only | p_only.keys() | uses_r.keys() | uses_p.keys()):
            tenant_id, _ = _split(entity)
            r = redis_defs.get(entity)
            g = p_only[entity] if entity in p_only else (None if entity in r_only or r is None else r)
            rv = to_int(r.get("version")) if r else None
            pv = to_int(g.get("version")) if g else None
            status = await rc.classify(entity, rc.keys.tenant(tenant_id).partition, rv, pv,
                                       redis_ahead=entity in uses_r)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            field_drifts(out, DOMAIN, entity, KIND, status, r, g, FIELDS, rv, pv)
            for into, problem, where_ in ((uses_r, "missing_in_postgres", "Redis"),
                                          (uses_p, "missing_in_redis", "PostgreSQL")):
                if entity in into:
                    ids = sorted(into[entity])
                    side = {"redis": ids} if where_ == "Redis" else {"postgres": ids}
                    out.drifts.append(Drift(
                        domain=DOMAIN, entity=entity, field="uses", problem=problem,  # type: ignore[arg-type]
                        redis_version=rv, postgres_version=pv,
                        detail=f"{len(ids)} uses only in {where_}: {sample(ids)}", **side))
        out.drifts += counter_drift
        out.drifts += await self._pg_counters(rc, scope)
        pg_only = p_only.keys() - redis_defs.keys()
        out.counts.append(KindCount(
            domain=DOMAIN, kind=KIND, checked=defs_diff.redis_count + len(pg_only),
            members=max(uses_diff.redis_count, uses_diff.postgres_count),
            in_flight=len(out.in_flight), drift=len({d.entity for d in out.drifts})))
        return out

    async def _pg_counters(self, rc: ReconcileContext, scope: Scope) -> list[Drift]:
        where, args = _filter(scope, "c")
        rows = await rc.fetch(
            f"""SELECT c.tenant_id, c.code, c.times_used, c.total_bonus_issued, c.version,
                       count(u.use_id) AS n, coalesce(sum(u.bonus_amount), 0)::bigint AS bonus
                  FROM promo_codes c
                  LEFT JOIN promo_code_uses u ON u.tenant_id = c.tenant_id AND u.code = c.code
                  {where}
                 GROUP BY c.tenant_id, c.code
                HAVING c.times_used <> count(u.use_id)
                    OR c.total_bonus_issued <> coalesce(sum(u.bonus_amount), 0)""", *args)
        out: list[Drift] = []
        for r in rows:
            entity = entity_of(r["tenant_id"], r["code"])
            for f, have, want in (("times_used", r["times_used"], r["n"]),
                                  ("total_bonus_issued", r["total_bonus_issued"], r["bonus"])):
                if have != want:
                    out.append(Drift(domain=DOMAIN, entity=entity, field=f, problem="counter", postgres=have,
                                     postgres_version=r["version"],
                                     detail=f"PostgreSQL {f} {have}, but the use rows give {want}"))
        return out

    # -- repair -----------------------------------------------------------------------
    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """times_used, total_bonus_issued := their use rows, for the stale codes only
        (locked first, so a use committing meanwhile is counted after ours)."""
        if not scope.wants_kind(KIND):
            return
        where, args = _filter(scope, "c")
        async with rc.pool.acquire() as conn, conn.transaction():
            stale = await conn.fetch(
                f"""SELECT c.tenant_id, c.code FROM promo_codes c {where}
                    {and_where(where)} EXISTS (
                        SELECT 1 FROM promo_code_uses u WHERE u.tenant_id = c.tenant_id AND u.code = c.code
                        HAVING count(*) <> c.times_used OR coalesce(sum(u.bonus_amount), 0) <> c.total_bonus_issued
                        UNION ALL SELECT 1 WHERE (c.times_used, c.total_bonus_issued) <> (0, 0)
                          AND NOT EXISTS (SELECT 1 FROM promo_code_uses u
                                           WHERE u.tenant_id = c.tenant_id AND u.code = c.code))
                    FOR UPDATE""", *args)
            if not stale:
                return
            await conn.execute("SELECT set_config('dropgate.promo_counter_sync', 'on', true)")
            fixed = await conn.fetch(
                """UPDATE promo_codes c SET times_used = s.n, total_bonus_issued = s.bonus
                     FROM (SELECT t, k, (SELECT count(*) FROM promo_code_uses u
                                          WHERE u.tenant_id = t AND u.code = k) AS n,
                                        (SELECT coalesce(sum(u.bonus_amount), 0) FROM promo_code_uses u
                                          WHERE u.tenant_id = t AND u.code = k) AS bonus
                             FROM unnest($1::text[], $2::text[]) AS x(t, k)) s
                    WHERE c.tenant_id = s.t AND c.code = s.k
                RETURNING c.tenant_id, c.code, s.n, s.bonus""",
                [r["tenant_id"] for r in stale], [r["code"] for r in stale])
            await conn.execute("SELECT set_config('dropgate.promo_counter_sync', 'off', true)")
        for r in fixed:
            rc.repaired(DOMAIN, entity_of(r["tenant_id"], r["code"]), "recounted",
                        f"PostgreSQL times_used := {r['n']}, total_bonus_issued := {r['bonus']} from the use rows")

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        by_entity: dict[str, list[Drift]] = defaultdict(list)
        for d in drifts:
            by_entity[d.entity].append(d)
        for entity, found in sorted(by_entity.items()):
            tenant_id, code = _split(entity)
            missing_row = any(d.field == KIND and d.problem == "missing_in_postgres" for d in found)
            lacks_definition = missing_row or any(d.problem == "postgres_behind" for d in found)
            redis_only = next((list(d.redis) for d in found
                               if d.field == "uses" and d.problem == "missing_in_postgres"), [])
            if lacks_definition or redis_only:
                await self._reemit(rc, entity, tenant_id, code, lacks_definition, redis_only, missing_row)
                continue  # restored next round, if still needed, once these applied
            if any(d.problem != "counter" or d.redis is not None for d in found):
                await restore_entity(rc, DOMAIN, entity, seen_version(found), "definition, uses, customers",
                                     partial(self._restore, rc))

    async def _reemit(self, rc: ReconcileContext, entity: str, tenant_id: str, code: str,
                      definition: bool, use_ids: list[str], missing_row: bool) -> None:
        tk = rc.keys.tenant(tenant_id)
        if missing_row:  # PostgreSQL lacks the code: every use with it
            use_ids = [text(u) for u in await rc.redis.hkeys(tk.promo_uses(code))]
        for i, chunk in enumerate(chunks(sorted(use_ids), PER_CALL)):
            await rc.scripts.call("resync_promo", [tk.log, tk.promo(code), tk.promo_uses(code)],
                                  [rc.settings.max_backlog, tenant_id, code,
                                   "1" if definition and i == 0 else "0", *chunk])
        what = ("definition and " if definition else "") + f"{len(use_ids)} uses"
        rc.repaired(DOMAIN, entity, "reemitted", f"{what} from Redis into the log")

    # -- restore ----------------------------------------------------------------------
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        if not scope.wants_kind(KIND):
            return 0
        return await self._restore(rc, scope, guard=whole_scope_guard(scope))

    async def _restore(self, rc: ReconcileContext, scope: Scope, *, guard: str) -> int:
        where, args = _filter(scope)
        return await restore_in_batches(
            rc, stage="restore promos", table="promo_codes", where=where, args=args,
            select=f"""tenant_id, code, bonus_kind, bonus_amount, bonus_percent, currency, max_uses,
                       per_customer_limit, {sql_ms('starts_at')} AS starts_ms, {sql_ms('ends_at')} AS ends_ms,
                       active, {sql_ms('created_at')} AS created_ms, version""",
            order_by="tenant_id, code", batch=RESTORE_BATCH,
            apply=lambda conn, rows: self._restore_batch(rc, conn, rows, guard))

    async def _restore_batch(self, rc: ReconcileContext, conn: Any, rows: list[Any], guard: str) -> int:
        uses: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for u in await conn.fetch(
                f"""SELECT tenant_id, code, use_id, customer_id, base_amount, bonus_amount,
                           {sql_ms('used_at')} AS at_ms FROM promo_code_uses
                    WHERE (tenant_id, code) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
                [r["tenant_id"] for r in rows], [r["code"] for r in rows]):
            uses[(u["tenant_id"], u["code"])].append(u)
        async with rc.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                t, c = r["tenant_id"], r["code"]
                tk = rc.keys.tenant(t)
                mine = uses.get((t, c), [])
                records: list[str] = []
                for u in mine:
                    records += [u["use_id"], json.dumps(
                        {"customer_id": u["customer_id"], "base_amount": u["base_amount"],
                         "bonus_amount": u["bonus_amount"], "at_ms": u["at_ms"]}, separators=(",", ":"))]
                per_customer = Counter(u["customer_id"] for u in mine)
                customers = [x for kv in per_customer.items() for x in kv]
                staged = []
                for target, pairs in ((tk.promo_uses(c), records), (tk.promo_customers(c), customers)):
                    staging = Keys.staging(target)
                    staged.append(staging)
                    for i, chunk in enumerate(chunks(pairs, 2 * PER_CALL) if pairs else []):
                        await rc.scripts.queue(pipe, "restore_members", [staging],
                                               ["1" if i == 0 else "0", "hash", *chunk])
                fields: list[Any] = [
                    "tenant_id", t, "code", c, "kind", r["bonus_kind"], "currency", r["currency"],
                    "per_customer_limit", r["per_customer_limit"], "active", "1" if r["active"] else "0",
                    "times_used", len(mine), "total_bonus_issued", sum(u["bonus_amount"] for u in mine),
                    "created_ms", r["created_ms"], "version", r["version"]]
                if r["bonus_kind"] == "fixed":
                    fields += ["amount", r["bonus_amount"]]
                else:
                    fields += ["percent", r["bonus_percent"]]
                for name, value in (("max_uses", r["max_uses"]), ("starts_at_ms", r["starts_ms"]),
                                    ("ends_at_ms", r["ends_ms"])):
                    if value is not None:
                        fields += [name, value]
                await rc.scripts.queue(pipe, "restore_promo",
                                       [tk.promo(c), tk.promo_uses(c), tk.promo_customers(c), *staged],
                                       [guard, *fields])
            replies = await pipe.execute()
        rc.progress.advance(len(rows))
        return sum(1 for raw in replies if decode_result(raw).get("restored") is True)


def _redis_counters(entity: str, fields: dict[str, str], records: dict[str, Any],
                    customers: dict[str, int]) -> list[Drift]:
    """Redis' counters against the use records they count (same MULTI)."""
    rv = to_int(fields.get("version"))
    out: list[Drift] = []
    used, bonus = to_int(fields.get("times_used")), to_int(fields.get("total_bonus_issued"))
    want_bonus = sum(int(u["bonus_amount"]) for u in records.values())
    if used != len(records):
        out.append(Drift(domain=DOMAIN, entity=entity, field="times_used", problem="counter", redis=used,
                         redis_version=rv, detail=f"Redis times_used {used}, but {len(records)} use records"))
    if bonus != want_bonus:
        out.append(Drift(domain=DOMAIN, entity=entity, field="total_bonus_issued", problem="counter",
                         redis=bonus, redis_version=rv,
                         detail=f"Redis total_bonus_issued {bonus}, but the use records give {want_bonus}"))
    counted = dict(Counter(u["customer_id"] for u in records.values()))
    if counted != customers:
        wrong = sorted(k for k in counted.keys() | customers.keys() if counted.get(k) != customers.get(k))
        out.append(Drift(domain=DOMAIN, entity=entity, field="customers", problem="counter", redis=wrong,
                         redis_version=rv, detail=f"per-customer counts differ from the use records: {sample(wrong)}"))
    return out
