"""Offers: definitions with inventory (reserved/sold), purchases with their status, holds.

Three sets over the scope: offer definitions (counters included), purchase records,
and holds (``tenant, offer, purchase, expiry ms``: Redis' holds zsets against
PostgreSQL's pending purchases). Within each store the counters must match what they
count: Redis' ``reserved`` / ``sold`` against the pending / paid purchase records and
the holds zset against the pending purchases (one MULTI per tenant), PostgreSQL's
trigger-kept ``offers.reserved`` / ``sold`` against ``offer_purchases``.

Not compared or restored, deliberately: a pending purchase's checkout session id and
url (attached after the hold without an event of their own; PostgreSQL receives them
with the purchase's next event, and the payment webhook carries them again),
idempotency records and rate-limit state (short-lived; a retry after a restore is a
new request), and processed-webhook markers (a redelivered webhook meets a purchase
that is no longer pending and changes nothing).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from functools import partial
from typing import Any

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
    restore_entity,
    restore_in_batches,
    sample,
    to_int,
    whole_scope_guard,
)

DOMAIN = "offers"
OFFER, PURCHASE = "offer", "purchase"
OFFER_FIELDS = ("event_id", "name", "price_minor", "currency", "total", "reserved", "sold", "max_per_order",
                "active", "archived", "expires_at_ms", "created_ms", "version")
PG_OFFER = ("event_id", "name", "price_minor", "currency", "inventory_total", "reserved", "sold", "max_per_order",
            "CASE WHEN active THEN 1 ELSE 0 END", "CASE WHEN archived THEN 1 ELSE 0 END", sql_ms("expires_at"),
            sql_ms("created_at"), "version")
PURCHASE_FIELDS = ("offer_id", "user_id", "quantity", "status", "amount_minor", "currency", "hold_expires_ms",
                   "session_id", "payment_intent", "refund_id", "retaken", "created_ms", "updated_ms", "version")
PG_PURCHASE = ("offer_id", "user_id", "quantity", "status", "amount_minor", "currency", sql_ms("hold_expires_at"),
               "CASE WHEN status <> 'pending' THEN checkout_session_id END", "payment_intent", "refund_id",
               "CASE WHEN retaken THEN 1 ELSE 0 END", sql_ms("created_at"), sql_ms("updated_at"), "version")
RESTORE_BATCH = 200


def _purchase_values(p: dict[str, Any]) -> list[Any]:
    values = []
    for f in PURCHASE_FIELDS:
        v = p.get(f)
        if f == "session_id" and p.get("status") == "pending":
            v = None  # attached without an event: PostgreSQL has it only from the next one
        elif f == "retaken":
            v = 1 if v else 0
        values.append(v)
    return values


def _scope_sql(scope: Scope, alias: str = "") -> tuple[str, list[Any]]:
    """Offers (and their purchases) in scope: exact offers, the offers of exact purchases,
    a tenant, or all."""
    a = f"{alias}." if alias else ""
    if scope.entities is not None:
        offers = [e.split(":", 2)[1:] for e in scope.entities if e.startswith(OFFER + ":")]
        buys = [e.split(":", 2)[1:] for e in scope.entities if e.startswith(PURCHASE + ":")]
        return (f"""WHERE (({a}tenant_id, {a}offer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                       OR ({a}tenant_id, {a}offer_id) IN (
                           SELECT p.tenant_id, p.offer_id FROM offer_purchases p
                            WHERE (p.tenant_id, p.purchase_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))))""",
                [[t for t, _ in offers], [o for _, o in offers], [t for t, _ in buys], [p for _, p in buys]])
    if scope.tenant_id is not None:
        return f"WHERE {a}tenant_id = $1", [scope.tenant_id]
    return "", []


class OfferReconciler:
    domain: str = DOMAIN
    kinds: tuple[str, ...] = (OFFER, PURCHASE)

    def owns(self, parts: tuple[str, ...]) -> bool:
        return len(parts) >= 3 and parts[0] == "t" and parts[2] in ("offer", "purchases", "event", "whevt")

    # -- compare ----------------------------------------------------------------------
    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        if not (scope.wants_kind(OFFER) or scope.wants_kind(PURCHASE)):
            return out
        index = await rc.index(scope)
        tenants: dict[str, set[str]] = defaultdict(set)
        for shape in (("t", None, "offer", None), ("t", None, "offer", None, "holds"), ("t", None, "purchases")):
            for _, parts in index.find(*shape):
                tenants[parts[1]]
                if len(parts) > 3:
                    tenants[parts[1]].add(parts[3])
        wanted_offers = None if scope.entities is None else {e for e in scope.entities if e.startswith(OFFER + ":")}
        wanted_buys = None if scope.entities is None else {e for e in scope.entities if e.startswith(PURCHASE + ":")}
        redis_offers: dict[str, dict[str, str]] = {}
        redis_buys: dict[str, dict[str, Any]] = {}
        offer_buys: dict[str, list[str]] = defaultdict(list)
        defs: list[str] = []
        buys: list[str] = []
        holds: list[str] = []
        counter_drift: list[Drift] = []
        rc.progress.stage("offers", len(tenants))
        for t in sorted(tenants):
            if scope.tenant_id is not None and t != scope.tenant_id:
                continue
            tk = rc.keys.tenant(t)
            offers = sorted(tenants[t])
            # MULTI: the tenant's purchases with its offers and holds, from one instant
            async with rc.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(tk.purchases())
                for o in offers:
                    pipe.hgetall(tk.offer(o))
                    pipe.zrange(tk.offer_holds(o), 0, -1, withscores=True)
                replies = await pipe.execute()
            records = {text(k): json.loads(v) for k, v in replies[0].items()}
            by_offer: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for p in records.values():
                by_offer[p["offer_id"]].append(p)
            in_scope_offers = set()
            for i, o in enumerate(offers):
                entity = f"{OFFER}:{t}:{o}"
                buys_of = by_offer.get(o, [])
                if wanted_offers is not None and entity not in wanted_offers and not any(
                        f"{PURCHASE}:{t}:{p['purchase_id']}" in (wanted_buys or ()) for p in buys_of):
                    continue
                in_scope_offers.add(o)
                offer_buys[entity] = [f"{PURCHASE}:{t}:{p['purchase_id']}" for p in buys_of]
                fields = {text(k): text(v) for k, v in replies[1 + 2 * i].items()}
                zholds = {text(m): int(float(s)) for m, s in replies[2 + 2 * i]}
                for pid, expiry in zholds.items():
                    holds.append(encode(t, o, pid, expiry))
                if fields:
                    redis_offers[entity] = fields
                    defs.append(encode(t, o, *(fields.get(f) for f in OFFER_FIELDS)))
                    counter_drift += _redis_counters(entity, fields, buys_of, zholds)
            for pid, p in records.items():
                if p["offer_id"] in in_scope_offers or (scope.entities is None):
                    entity = f"{PURCHASE}:{t}:{pid}"
                    redis_buys[entity] = p
                    buys.append(encode(t, pid, *_purchase_values(p)))
            rc.progress.advance(1)
        where, args = _scope_sql(scope)
        pwhere, pargs = _scope_sql(scope, "p")
        defs_diff, buys_diff, holds_diff = await asyncio.gather(
            diff_sets(StreamSide(listed(defs)), SqlSide(
                rc.fetch, args=args, from_sql=f"FROM offers {where}",
                member_sql=sql_member("tenant_id", "offer_id", *PG_OFFER))),
            diff_sets(StreamSide(listed(buys)), SqlSide(
                rc.fetch, args=args, from_sql=f"FROM offer_purchases {where}",
                member_sql=sql_member("tenant_id", "purchase_id", *PG_PURCHASE))),
            diff_sets(StreamSide(listed(holds)), SqlSide(
                rc.fetch, args=pargs,
                from_sql=f"FROM offer_purchases p {pwhere} {and_where(pwhere)} status = 'pending'",
                member_sql=sql_member("tenant_id", "offer_id", "purchase_id", sql_ms("hold_expires_at")))),
        )
        # offers, with their holds
        r_only = {f"{OFFER}:{decode(m)[0]}:{decode(m)[1]}" for m in defs_diff.only_redis}
        p_only: dict[str, dict[str, str]] = {}
        for m in defs_diff.only_postgres:
            v = decode(m)
            p_only[f"{OFFER}:{v[0]}:{v[1]}"] = dict(zip(OFFER_FIELDS, v[2:], strict=True))
        holds_r: dict[str, list[str]] = defaultdict(list)
        holds_p: dict[str, list[str]] = defaultdict(list)
        for members, into in ((holds_diff.only_redis, holds_r), (holds_diff.only_postgres, holds_p)):
            for m in members:
                hv = decode(m)
                into[f"{OFFER}:{hv[0]}:{hv[1]}"].append(f"{hv[2]}@{hv[3]}")
        for entity in sorted(r_only | p_only.keys() | holds_r.keys() | holds_p.keys()):
            t = entity.split(":")[1]
            r = redis_offers.get(entity)
            g = p_only[entity] if entity in p_only else (None if entity in r_only or r is None else r)
            rv = to_int(r.get("version")) if r else None
            pv = to_int(g.get("version")) if g else None
            partition = rc.keys.tenant(t).partition
            status = await rc.classify(entity, partition, rv, pv, redis_ahead=entity in holds_r)
            if status != "in_flight" and (entity in holds_r or (rv is not None and (pv is None or rv > pv))):
                # holds and purchases bump the offer's version in events named after the
                # purchase (their offer_version): one of those waiting is the offer in flight
                waiting = await rc.pending(partition)
                if any(b in waiting for b in offer_buys.get(entity, ())):
                    status = "in_flight"
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            field_drifts(out, DOMAIN, entity, OFFER, status, r, g, OFFER_FIELDS, rv, pv)
            for into, problem, side in ((holds_r, "missing_in_postgres", "Redis"),
                                        (holds_p, "missing_in_redis", "PostgreSQL")):
                if entity in into:
                    items = sorted(into[entity])
                    values = {"redis": items} if side == "Redis" else {"postgres": items}
                    out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="holds", problem=problem,  # type: ignore[arg-type]
                                            redis_version=rv, postgres_version=pv,
                                            detail=f"{len(items)} holds only in {side}: {sample(items)}", **values))
        # purchases
        b_r = {f"{PURCHASE}:{decode(m)[0]}:{decode(m)[1]}" for m in buys_diff.only_redis}
        b_p: dict[str, dict[str, str]] = {}
        for m in buys_diff.only_postgres:
            v = decode(m)
            b_p[f"{PURCHASE}:{v[0]}:{v[1]}"] = dict(zip(PURCHASE_FIELDS, v[2:], strict=True))
        for entity in sorted(b_r | b_p.keys()):
            t = entity.split(":")[1]
            rec = redis_buys.get(entity)
            r_ = {f: "" if x is None else str(x) for f, x in zip(PURCHASE_FIELDS, _purchase_values(rec), strict=True)
                  } if rec else None
            g_ = b_p.get(entity)
            rv = to_int(r_.get("version")) if r_ else None
            pv = to_int(g_.get("version")) if g_ else None
            status = await rc.classify(entity, rc.keys.tenant(t).partition, rv, pv)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            field_drifts(out, DOMAIN, entity, PURCHASE, status, r_, g_, PURCHASE_FIELDS, rv, pv)
            if g_ is not None or r_ is not None:
                out.drifts[-1].detail += f" (offer {(g_ or r_ or {}).get('offer_id')})"
        out.drifts += counter_drift
        out.drifts += await self._pg_counters(rc, scope)
        n_offers = defs_diff.redis_count + len(p_only.keys() - redis_offers.keys())
        n_buys = buys_diff.redis_count + len(b_p.keys() - redis_buys.keys())
        offers_drift = {d.entity for d in out.drifts if d.entity.startswith(OFFER + ":")}
        buys_drift = {d.entity for d in out.drifts if d.entity.startswith(PURCHASE + ":")}
        out.counts.append(KindCount(domain=DOMAIN, kind=OFFER, checked=n_offers,
                                    members=max(holds_diff.redis_count, holds_diff.postgres_count),
                                    in_flight=sum(1 for e in out.in_flight if e.startswith(OFFER + ":")),
                                    drift=len(offers_drift)))
        out.counts.append(KindCount(domain=DOMAIN, kind=PURCHASE, checked=n_buys,
                                    in_flight=sum(1 for e in out.in_flight if e.startswith(PURCHASE + ":")),
                                    drift=len(buys_drift)))
        return out

    async def _pg_counters(self, rc: ReconcileContext, scope: Scope) -> list[Drift]:
        where, args = _scope_sql(scope, "o")
        rows = await rc.fetch(
            f"""SELECT o.tenant_id, o.offer_id, o.reserved, o.sold, o.version, s.r, s.s FROM offers o
                  CROSS JOIN LATERAL (
                      SELECT coalesce(sum(quantity) FILTER (WHERE status = 'pending'), 0) AS r,
                             coalesce(sum(quantity) FILTER (WHERE status = 'paid'), 0) AS s
                        FROM offer_purchases p WHERE p.tenant_id = o.tenant_id AND p.offer_id = o.offer_id) s
                  {where} {and_where(where)} (o.reserved <> s.r OR o.sold <> s.s)""", *args)
        out = []
        for r in rows:
            for f, have, want in (("reserved", r["reserved"], r["r"]), ("sold", r["sold"], r["s"])):
                if have != want:
                    out.append(Drift(domain=DOMAIN, entity=f"{OFFER}:{r['tenant_id']}:{r['offer_id']}", field=f,
                                     problem="counter", postgres=have, postgres_version=r["version"],
                                     detail=f"PostgreSQL {f} {have}, but the purchase rows give {want}"))
        return out

    # -- repair -----------------------------------------------------------------------
    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """offers.reserved / sold := the pending / paid purchase rows (locked first)."""
        if not (scope.wants_kind(OFFER) or scope.wants_kind(PURCHASE)):
            return
        where, args = _scope_sql(scope, "o")
        by_xk = """(SELECT coalesce(sum(quantity) FILTER (WHERE status = 'pending'), 0) AS r,
                             coalesce(sum(quantity) FILTER (WHERE status = 'paid'), 0) AS s
                        FROM offer_purchases p WHERE p.tenant_id = x.t AND p.offer_id = x.k)"""
        counted = """(SELECT coalesce(sum(quantity) FILTER (WHERE status = 'pending'), 0) AS r,
                             coalesce(sum(quantity) FILTER (WHERE status = 'paid'), 0) AS s
                        FROM offer_purchases p WHERE p.tenant_id = o.tenant_id AND p.offer_id = o.offer_id)"""
        async with rc.pool.acquire() as conn, conn.transaction():
            stale = await conn.fetch(
                f"""SELECT o.tenant_id, o.offer_id FROM offers o CROSS JOIN LATERAL {counted} s
                    {where} {and_where(where)} (o.reserved <> s.r OR o.sold <> s.s) FOR UPDATE OF o""", *args)
            if not stale:
                return
            fixed = await conn.fetch(
                f"""UPDATE offers o SET reserved = s.r, sold = s.s
                      FROM (SELECT x.t, x.k, c.r, c.s FROM unnest($1::text[], $2::text[]) AS x(t, k)
                              CROSS JOIN LATERAL {by_xk} c) s
                     WHERE o.tenant_id = s.t AND o.offer_id = s.k
                 RETURNING o.tenant_id, o.offer_id, s.r, s.s""",
                [r["tenant_id"] for r in stale], [r["offer_id"] for r in stale])
        for r in fixed:
            rc.repaired(DOMAIN, f"{OFFER}:{r['tenant_id']}:{r['offer_id']}", "recounted",
                        f"PostgreSQL reserved := {r['r']}, sold := {r['s']} from the purchase rows")

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        reemit_defs: set[tuple[str, str]] = set()
        reemit_buys: dict[tuple[str, str], list[str]] = defaultdict(list)
        restore: dict[tuple[str, str], int | None] = {}
        for d in drifts:
            kind, t, ident = d.entity.split(":", 2)
            ahead = d.problem in ("missing_in_postgres", "postgres_behind")
            if kind == OFFER:
                if ahead and d.field != "holds":
                    reemit_defs.add((t, ident))
                elif d.problem != "counter" or d.redis is not None:
                    if not ahead:
                        restore.setdefault((t, ident), d.redis_version)
            else:
                rec = await rc.redis.hget(rc.keys.tenant(t).purchases(), ident)
                offer = str(json.loads(rec)["offer_id"] if rec else (d.postgres or {}).get("offer_id") or "")
                if ahead and rec:
                    reemit_buys[(t, offer)].append(ident)
                elif offer:
                    restore.setdefault((t, offer), None)
        for t, o in sorted(reemit_defs | reemit_buys.keys()):
            tk = rc.keys.tenant(t)
            pids = sorted(reemit_buys.get((t, o), []))
            for i, chunk in enumerate(chunks(pids, 2_000)):
                await rc.scripts.call("resync_offer", [tk.log, tk.offer(o), tk.purchases()],
                                      [rc.settings.max_backlog, t, o,
                                       "1" if (t, o) in reemit_defs and i == 0 else "0", *chunk])
            for pid in pids:
                rc.repaired(DOMAIN, f"{PURCHASE}:{t}:{pid}", "reemitted", "purchase from Redis into the log")
            if (t, o) in reemit_defs:
                rc.repaired(DOMAIN, f"{OFFER}:{t}:{o}", "reemitted", "definition from Redis into the log")
        for (t, o), rv in sorted(restore.items()):
            if (t, o) in reemit_defs or (t, o) in reemit_buys:
                continue  # restored next round, if still needed, once these applied
            if rv is None:
                rv = to_int(await rc.redis.hget(rc.keys.tenant(t).offer(o), "version"))
            await restore_entity(rc, DOMAIN, f"{OFFER}:{t}:{o}", rv, "offer, its purchases and holds",
                                 partial(self._restore, rc))

    # -- restore ----------------------------------------------------------------------
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        if not scope.wants_kind(OFFER):
            return 0
        return await self._restore(rc, scope, guard=whole_scope_guard(scope))

    async def _restore(self, rc: ReconcileContext, scope: Scope, *, guard: str) -> int:
        where, args = _scope_sql(scope)
        return await restore_in_batches(
            rc, stage="restore offers", table="offers", where=where, args=args,
            select=f"""tenant_id, offer_id, event_id, name, price_minor, currency, inventory_total,
                       max_per_order, active, archived, {sql_ms('expires_at')} AS expires_ms,
                       {sql_ms('created_at')} AS created_ms, version""",
            order_by="tenant_id, offer_id", batch=RESTORE_BATCH,
            apply=lambda conn, rows: self._restore_batch(rc, conn, rows, guard))

    async def _restore_batch(self, rc: ReconcileContext, conn: Any, rows: list[Any], guard: str) -> int:
        buys: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for p in await conn.fetch(
                f"""SELECT tenant_id, purchase_id, offer_id, user_id, quantity, status, amount_minor, currency,
                           {sql_ms('hold_expires_at')} AS hold_expires_ms, checkout_session_id, payment_intent,
                           refund_id, retaken, {sql_ms('created_at')} AS created_ms,
                           {sql_ms('updated_at')} AS updated_ms, version
                      FROM offer_purchases
                     WHERE (tenant_id, offer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
                [r["tenant_id"] for r in rows], [r["offer_id"] for r in rows]):
            rec: dict[str, Any] = {
                "purchase_id": p["purchase_id"], "tenant_id": p["tenant_id"], "offer_id": p["offer_id"],
                "user_id": p["user_id"], "quantity": p["quantity"], "status": p["status"],
                "amount_minor": p["amount_minor"], "currency": p["currency"],
                "hold_expires_ms": p["hold_expires_ms"], "created_ms": p["created_ms"],
                "updated_ms": p["updated_ms"], "version": p["version"]}
            for f, col in (("session_id", "checkout_session_id"), ("payment_intent", "payment_intent"),
                           ("refund_id", "refund_id")):
                if p[col] is not None:
                    rec[f] = p[col]
            if p["retaken"]:
                rec["retaken"] = True
            buys[(p["tenant_id"], p["offer_id"])].append(rec)
        async with rc.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                t, o = r["tenant_id"], r["offer_id"]
                tk = rc.keys.tenant(t)
                mine = buys.get((t, o), [])
                reserved = sum(p["quantity"] for p in mine if p["status"] == "pending")
                sold = sum(p["quantity"] for p in mine if p["status"] == "paid")
                fields: list[Any] = [
                    "tenant_id", t, "offer_id", o, "event_id", r["event_id"], "name", r["name"],
                    "price_minor", r["price_minor"], "currency", r["currency"], "total", r["inventory_total"],
                    "reserved", reserved, "sold", sold, "max_per_order", r["max_per_order"],
                    "active", "1" if r["active"] else "0", "archived", "1" if r["archived"] else "0",
                    "created_ms", r["created_ms"], "version", r["version"]]
                if r["expires_ms"] is not None:
                    fields += ["expires_at_ms", r["expires_ms"]]
                await rc.scripts.queue(
                    pipe, "restore_offer",
                    [tk.offer(o), tk.offer_holds(o), tk.offer_hold_expiry(), tk.purchases(),
                     tk.offers_by_event(r["event_id"])],
                    [guard, t, o, json.dumps(mine, separators=(",", ":")), *fields])
            replies = await pipe.execute()
        rc.progress.advance(len(rows))
        return sum(1 for raw in replies if decode_result(raw).get("restored") is True)


def _redis_counters(entity: str, fields: dict[str, str], buys: list[dict[str, Any]],
                    holds: dict[str, int]) -> list[Drift]:
    rv = to_int(fields.get("version"))
    out = []
    pending = {p["purchase_id"]: p for p in buys if p["status"] == "pending"}
    for f, want in (("reserved", sum(p["quantity"] for p in pending.values())),
                    ("sold", sum(p["quantity"] for p in buys if p["status"] == "paid"))):
        have = to_int(fields.get(f))
        if have != want:
            out.append(Drift(domain=DOMAIN, entity=entity, field=f, problem="counter", redis=have, redis_version=rv,
                             detail=f"Redis {f} {have}, but the purchase records give {want}"))
    if set(holds) != set(pending):
        odd = sorted(set(holds) ^ set(pending))
        out.append(Drift(domain=DOMAIN, entity=entity, field="holds", problem="counter", redis=odd, redis_version=rv,
                         detail=f"holds and pending purchases differ in Redis: {sample(odd)}"))
    return out
