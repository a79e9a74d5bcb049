"""Tenant operations: balances against the ledger rows, withdrawals, orders, booking slots.

Four sets over the scope:
- balances (``tenant, currency, amount``): the ``bal:<currency>`` fields of Redis'
  tenant hash against ``tenant_balances``; within PostgreSQL, ``tenant_balances``
  (trigger-kept) against ``tenant_balances_from_rows`` (payments minus completed
  withdrawals). Balances have no version of their own: a balance that differs is in
  flight while a payment or withdrawal event of its tenant waits in the log (or the
  persister committed in the partition since the snapshot).
- withdrawals and orders: each record against its row (withdrawals by version; an
  order's items are not compared: PostgreSQL keeps them as jsonb, which re-spells the
  JSON text; total, currency and status are).
- booking slots (``resource, start, end, capacity, booked``) against ``booking_slots``;
  within PostgreSQL ``booked`` against the ``bookings`` rows. Slots carry no version in
  PostgreSQL: a slot that differs is in flight while an event of it waits.

Repair: withdrawals and orders Redis holds and PostgreSQL lacks are re-emitted
(``resync_ledger``); otherwise PostgreSQL wins: records and slots are restored,
balances set to what the rows give (``restore_balance``, a compare-and-set). Redis
keeps no per-payment or per-booking record, so a payment or booking whose event was
lost cannot be re-emitted: its balance or slot count is reported and, on repair,
brought back to the rows.

Not restored: the tenant actor's lease hash (an actor re-acquires it with a new
epoch on its next activation).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from dropgate.engine.keys import TenantKeys
from dropgate.engine.scripts import decode_result
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Scope,
    repair_log,
)
from dropgate.persistence.reconcile.sets import (
    SqlSide,
    StreamSide,
    decode,
    diff_sets,
    encode,
    hashes,
    sql_member,
    sql_ms,
)
from dropgate.persistence.reconcile.util import (
    and_where,
    field_drifts,
    restore_entity,
    to_int,
    whole_scope_guard,
)

DOMAIN = "ledger"


@dataclass(frozen=True)
class Kind:
    name: str
    shape: tuple[str | None, ...]       # key parts after the tenant id
    fields: tuple[str, ...]             # Redis hash fields compared
    table: str
    ids: tuple[str, ...]                # PostgreSQL id expressions (the entity's parts)
    pg: tuple[str, ...]                 # PostgreSQL expressions of ``fields``
    versioned: bool

    def key(self, tk: TenantKeys, ident: list[str]) -> str:
        if self.name == "withdrawal":
            return tk.withdrawal(ident[0])
        if self.name == "order":
            return tk.order(ident[0])
        return tk.booking_slot(ident[0], int(ident[1]), int(ident[2]))


WITHDRAWAL = Kind("withdrawal", ("wd", None), ("amount", "currency", "initiated_by", "approved_by", "status",
                                               "created_ms", "completed_ms", "version"),
                  "withdrawals", ("withdrawal_id",),
                  ("amount_minor", "currency", "initiated_by", "approved_by", "status", sql_ms("created_at"),
                   sql_ms("completed_at"), "version"), True)
ORDER = Kind("order", ("order", None), ("total", "currency", "status", "created_ms", "version"),
             "orders", ("order_id",), ("total_minor", "currency", "status", sql_ms("created_at"), "1"), True)
SLOT = Kind("slot", ("slot", None, None, None), ("capacity", "booked"), "booking_slots",
            ("resource_id", sql_ms("slot_start"), sql_ms("slot_end")), ("capacity", "booked"), False)
KINDS = (WITHDRAWAL, ORDER, SLOT)
BALANCE = "balance"


def _tenant_sql(scope: Scope, alias: str = "") -> tuple[str, list[Any]]:
    a = f"{alias}." if alias else ""
    tenants = None
    if scope.entities is not None:
        tenants = sorted({e.split(":")[1] for e in scope.entities})
    if tenants is not None:
        return f"WHERE {a}tenant_id = ANY($1::text[])", [tenants]
    if scope.tenant_id is not None:
        return f"WHERE {a}tenant_id = $1", [scope.tenant_id]
    return "", []


class LedgerReconciler:
    domain: str = DOMAIN
    kinds: tuple[str, ...] = (BALANCE, "withdrawal", "order", "slot")

    def owns(self, parts: tuple[str, ...]) -> bool:
        return len(parts) >= 4 and parts[0] == "t" and parts[2] in ("wd", "order", "slot", "actor")

    # -- compare ----------------------------------------------------------------------
    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        index = await rc.index(scope)
        results = await asyncio.gather(*(self._compare_kind(rc, scope, index, k) for k in KINDS
                                         if scope.wants_kind(k.name)))
        if scope.wants_kind(BALANCE):
            results.append(await self._compare_balances(rc, scope, index))
        for part in results:
            out.counts += part.counts
            out.drifts += part.drifts
            out.in_flight |= part.in_flight
        out.drifts += await self._pg_counters(rc, scope)
        for c in out.counts:
            c.drift = len({d.entity for d in out.drifts if d.kind == c.kind})
        return out

    async def _compare_kind(self, rc: ReconcileContext, scope: Scope, index: Any, kind: Kind) -> Comparison:
        out = Comparison()
        targets: list[tuple[str, str, list[str]]] = []
        for _, parts in index.find("t", None, *kind.shape):
            ident = list(parts[3:])
            entity = ":".join((kind.name, parts[1], *ident))
            if scope.wants(entity, parts[1]):
                targets.append((entity, parts[1], ident))
        redis: dict[str, dict[str, str]] = {}

        async def records() -> AsyncIterator[list[str]]:
            keys = [kind.key(rc.keys.tenant(t), ident) for _, t, ident in targets]
            i = 0
            async for batch in hashes(rc.redis, keys):
                members = []
                for _, fields in batch:
                    entity, t, ident = targets[i]
                    i += 1
                    if fields:
                        redis[entity] = fields
                        members.append(encode(t, *ident, *(fields.get(f) for f in kind.fields)))
                yield members

        where, args = _tenant_sql(scope)
        diff = await diff_sets(StreamSide(records), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM {kind.table} {where}",
            member_sql=sql_member("tenant_id", *kind.ids, *kind.pg)))
        n_ids = len(kind.ids)
        r_only = {":".join((kind.name, *decode(m)[:1 + n_ids])) for m in diff.only_redis}
        p_only: dict[str, dict[str, str]] = {}
        for m in diff.only_postgres:
            v = decode(m)
            p_only[":".join((kind.name, *v[:1 + n_ids]))] = dict(zip(kind.fields, v[1 + n_ids:], strict=True))
        for entity in sorted(r_only | p_only.keys()):
            t = entity.split(":")[1]
            if scope.entities is not None and entity not in scope.entities:
                continue
            r = redis.get(entity)
            g = p_only.get(entity)
            # versionless (slots): 0 stands for "present", so classify can tell who lacks it
            rv = (to_int(r.get("version")) if kind.versioned else 0) if r else None
            pv = (to_int(g.get("version")) if kind.versioned else 0) if g else None
            status = await rc.classify(entity, rc.keys.tenant(t).partition, rv, pv, versioned=kind.versioned)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            field_drifts(out, DOMAIN, entity, kind.name, status, r, g, kind.fields, rv, pv)
        out.counts.append(KindCount(domain=DOMAIN, kind=kind.name,
                                    checked=diff.redis_count + len(p_only.keys() - redis.keys()),
                                    in_flight=len(out.in_flight)))
        return out

    async def _compare_balances(self, rc: ReconcileContext, scope: Scope, index: Any) -> Comparison:
        out = Comparison()
        tenants = sorted(parts[1] for _, parts in index.find("tenant", None)
                         if scope.tenant_id is None or parts[1] == scope.tenant_id)
        redis: dict[str, str] = {}
        members: list[str] = []
        async for batch in hashes(rc.redis, [rc.keys.tenant(t).tenant() for t in tenants]):
            for key, fields in batch:
                t = key.rsplit(":", 1)[1]
                for f, v in fields.items():
                    if f.startswith("bal:"):
                        entity = f"{BALANCE}:{t}:{f[4:]}"
                        if scope.wants(entity, t):
                            redis[entity] = v
                            members.append(encode(t, f[4:], v))

        async def produce() -> AsyncIterator[list[str]]:
            yield members

        where, args = _tenant_sql(scope)
        diff = await diff_sets(StreamSide(produce), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM tenant_balances {where}",
            member_sql=sql_member("tenant_id", "currency", "balance_minor")))
        pg = {f"{BALANCE}:{decode(m)[0]}:{decode(m)[1]}": decode(m)[2] for m in diff.only_postgres}
        for entity in sorted({f"{BALANCE}:{decode(m)[0]}:{decode(m)[1]}" for m in diff.only_redis} | pg.keys()):
            if scope.entities is not None and entity not in scope.entities:
                continue
            t = entity.split(":")[1]
            partition = rc.keys.tenant(t).partition
            waiting = await rc.pending(partition)
            if any(e.startswith((f"payment:{t}:", f"withdrawal:{t}:")) for e in waiting) or await rc.unsettled(
                    entity, partition, None):
                out.in_flight.add(entity)
                continue
            r, g = redis.get(entity), pg.get(entity)
            problem: Any = "missing_in_redis" if r is None else "missing_in_postgres" if g is None else "differs"
            out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="balance", problem=problem, redis=r,
                                    postgres=g, detail=f"balance: Redis {r}, PostgreSQL {g}"))
        out.counts.append(KindCount(domain=DOMAIN, kind=BALANCE,
                                    checked=diff.redis_count + len(pg.keys() - redis.keys()),
                                    in_flight=len(out.in_flight)))
        return out

    async def _pg_counters(self, rc: ReconcileContext, scope: Scope) -> list[Drift]:
        out: list[Drift] = []
        where, args = _tenant_sql(scope, "b")
        if scope.wants_kind(BALANCE):
            for r in await rc.fetch(
                    f"""SELECT b.tenant_id, b.currency, b.balance_minor, coalesce(v.balance_minor, 0) AS rows
                          FROM tenant_balances b LEFT JOIN tenant_balances_from_rows v USING (tenant_id, currency)
                          {where} {and_where(where)} b.balance_minor <> coalesce(v.balance_minor, 0)""", *args):
                out.append(Drift(domain=DOMAIN, entity=f"{BALANCE}:{r['tenant_id']}:{r['currency']}", field="balance",
                                 problem="counter", postgres=r["balance_minor"],
                                 detail=f"PostgreSQL balance {r['balance_minor']}, "
                                        f"but the ledger rows give {r['rows']}"))
        if scope.wants_kind("slot"):
            for r in await rc.fetch(
                    f"""SELECT b.tenant_id, b.resource_id, {sql_ms('b.slot_start')} AS s, {sql_ms('b.slot_end')} AS e,
                               b.booked, (SELECT count(*) FROM bookings k WHERE k.tenant_id = b.tenant_id
                                  AND k.resource_id = b.resource_id AND k.slot_start = b.slot_start
                                  AND k.slot_end = b.slot_end) AS n
                          FROM booking_slots b {where}""", *args):
                if r["booked"] != r["n"]:
                    slot = f"slot:{r['tenant_id']}:{r['resource_id']}:{r['s']}:{r['e']}"
                    out.append(Drift(domain=DOMAIN, entity=slot,
                                     field="booked", problem="counter", postgres=r["booked"],
                                     detail=f"PostgreSQL booked {r['booked']}, but {r['n']} booking rows"))
        if scope.entities is not None:
            out = [d for d in out if d.entity in scope.entities]
        return out

    # -- repair -----------------------------------------------------------------------
    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """Balances := the ledger rows; slots' booked := their booking rows (rows locked first)."""
        where, args = _tenant_sql(scope, "b")
        async with rc.pool.acquire() as conn, conn.transaction():
            if scope.wants_kind(BALANCE):
                await conn.execute(f"SELECT 1 FROM tenant_balances b {where} FOR UPDATE", *args)
                fixed = await conn.fetch(
                    f"""UPDATE tenant_balances b SET balance_minor = coalesce(v.balance_minor, 0)
                          FROM tenant_balances b2 LEFT JOIN tenant_balances_from_rows v USING (tenant_id, currency)
                         WHERE b2.tenant_id = b.tenant_id AND b2.currency = b.currency
                           AND b.balance_minor <> coalesce(v.balance_minor, 0) {where.replace('WHERE', 'AND')}
                     RETURNING b.tenant_id, b.currency, b.balance_minor""", *args)
                for r in fixed:
                    rc.repaired(DOMAIN, f"{BALANCE}:{r['tenant_id']}:{r['currency']}", "recounted",
                                f"PostgreSQL balance := {r['balance_minor']} from the ledger rows")
            if scope.wants_kind("slot"):
                await conn.execute(f"SELECT 1 FROM booking_slots b {where} FOR UPDATE", *args)
                fixed = await conn.fetch(
                    f"""UPDATE booking_slots b SET booked = n.n
                          FROM (SELECT s.tenant_id, s.resource_id, s.slot_start, s.slot_end, count(k.booking_id) AS n
                                  FROM booking_slots s LEFT JOIN bookings k USING (tenant_id, resource_id, slot_start,
                                                                                    slot_end)
                                 GROUP BY 1, 2, 3, 4) n
                         WHERE (b.tenant_id, b.resource_id, b.slot_start, b.slot_end)
                               = (n.tenant_id, n.resource_id, n.slot_start, n.slot_end)
                           AND b.booked <> n.n {where.replace('WHERE', 'AND')}
                     RETURNING b.tenant_id, b.resource_id, {sql_ms('b.slot_start')} AS s, {sql_ms('b.slot_end')} AS e,
                               b.booked""", *args)
                for r in fixed:
                    rc.repaired(DOMAIN, f"slot:{r['tenant_id']}:{r['resource_id']}:{r['s']}:{r['e']}", "recounted",
                                f"PostgreSQL booked := {r['booked']} booking rows")

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        by_entity: dict[str, list[Drift]] = defaultdict(list)
        for d in drifts:
            by_entity[d.entity].append(d)
        for entity, found in sorted(by_entity.items()):
            kind, t, *ident = entity.split(":")
            tk = rc.keys.tenant(t)
            if all(d.problem == "counter" and d.redis is None for d in found):
                continue  # PostgreSQL counters: recount did it
            if kind == BALANCE:
                await self._repair_balance(rc, entity, t, ident[0], found)
                continue
            spec = next(k for k in KINDS if k.name == kind)
            key = spec.key(tk, ident)
            if kind != "slot" and any(d.problem in ("missing_in_postgres", "postgres_behind") for d in found):
                await rc.scripts.call("resync_ledger", [tk.log, key], [rc.settings.max_backlog, kind, t, ident[0]])
                rc.repaired(DOMAIN, entity, "reemitted", f"{kind} from Redis into the log")
                continue
            await restore_entity(rc, DOMAIN, entity, to_int(await rc.redis.hget(key, "version")), kind,
                                 partial(self._restore_kind, rc, spec))

    async def _repair_balance(self, rc: ReconcileContext, entity: str, t: str, currency: str,
                              found: list[Drift]) -> None:
        seen = next((d.redis for d in found if d.field == "balance" and d.problem != "counter"), None)
        if seen is None:
            seen = next((d.redis for d in found), None)
        value = await rc.pool.fetchval(
            "SELECT balance_minor FROM tenant_balances_from_rows WHERE tenant_id = $1 AND currency = $2", t, currency)
        raw = await rc.scripts.call("restore_balance", [rc.keys.tenant(t).tenant()],
                                    [f"bal:{currency}", "" if seen is None else str(seen), str(value or 0)])
        if raw.get("restored"):
            rc.repaired(DOMAIN, entity, "restored", f"Redis balance := {value or 0} from the ledger rows")
        else:
            repair_log.warning("repair %s %s: skipped, the balance changed in Redis meanwhile", DOMAIN, entity)

    # -- restore ----------------------------------------------------------------------
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        restored = 0
        for kind in KINDS:
            if scope.wants_kind(kind.name):
                restored += await self._restore_kind(rc, kind, scope, guard=whole_scope_guard(scope))
        if scope.wants_kind(BALANCE):
            where, args = _tenant_sql(scope)
            rows = await rc.pool.fetch(
                f"SELECT tenant_id, currency, balance_minor FROM tenant_balances_from_rows {where} ORDER BY 1, 2",
                *args)
            by_tenant: dict[str, list[Any]] = defaultdict(list)
            for r in rows:
                by_tenant[r["tenant_id"]] += [f"bal:{r['currency']}", r["balance_minor"]]
            async with rc.redis.pipeline(transaction=False) as pipe:
                for t, pairs in by_tenant.items():  # merged into the tenant hash restored before
                    await rc.scripts.queue(pipe, "restore_hash", [rc.keys.tenant(t).tenant()],
                                           ["*", "merge", "", *pairs])
                await pipe.execute()
            restored += len(rows)
        return restored

    async def _restore_kind(self, rc: ReconcileContext, kind: Kind, scope: Scope, *, guard: str) -> int:
        where, args = _tenant_sql(scope, "s" if kind is SLOT else "")
        if kind is WITHDRAWAL:
            sql = f"""SELECT tenant_id, withdrawal_id AS id, amount_minor AS amount, currency, initiated_by,
                             approved_by, status, {sql_ms('created_at')} AS created_ms,
                             {sql_ms('completed_at')} AS completed_ms, version FROM withdrawals {where}"""
        elif kind is ORDER:
            sql = f"""SELECT tenant_id, order_id AS id, items::text AS items, total_minor AS total, currency, status,
                             {sql_ms('created_at')} AS created_ms, 1 AS version FROM orders {where}"""
        else:
            sql = f"""SELECT s.tenant_id, s.resource_id, {sql_ms('s.slot_start')} AS slot_start_ms,
                             {sql_ms('s.slot_end')} AS slot_end_ms, s.capacity,
                             (SELECT count(*) FROM bookings k WHERE k.tenant_id = s.tenant_id
                                 AND k.resource_id = s.resource_id AND k.slot_start = s.slot_start
                                 AND k.slot_end = s.slot_end) AS booked
                        FROM booking_slots s {where}"""
        rows = await rc.pool.fetch(sql, *args)
        restored = 0
        async with rc.redis.pipeline(transaction=False) as pipe:
            queued = 0
            for r in rows:
                t = r["tenant_id"]
                if kind is SLOT:
                    ident = [r["resource_id"], str(r["slot_start_ms"]), str(r["slot_end_ms"])]
                else:
                    ident = [r["id"]]
                entity = ":".join((kind.name, t, *ident))
                if scope.entities is not None and entity not in scope.entities:
                    continue
                fields: list[Any] = ["tenant_id", t] if kind is not SLOT else []
                for name, value in dict(r).items():
                    if name in ("tenant_id", "id") or value is None:
                        continue
                    fields += [name, value]
                if kind is WITHDRAWAL:
                    fields += ["withdrawal_id", r["id"]]
                elif kind is ORDER:
                    fields += ["order_id", r["id"]]
                else:  # a slot's version only orders its events: continue from its count
                    fields += ["version", r["booked"]]
                await rc.scripts.queue(pipe, "restore_hash", [kind.key(rc.keys.tenant(t), ident)],
                                       [guard, "replace", "", *fields])
                queued += 1
            replies = await pipe.execute() if queued else []
        restored += sum(1 for raw in replies if decode_result(raw).get("restored") is True)
        return restored

