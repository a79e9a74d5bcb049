"""Offers and purchases: the generic reconciler with the hooks offers need.

- Purchases are JSON records in their tenant's purchases hash, read with the tenant's
  offers and holds in one MULTI, so Redis' ``reserved`` / ``sold`` are checked
  against the purchase records and the holds against the pending purchases.
- Holds and purchases bump their offer's version in events named after the purchase:
  one of those waiting in the log is the offer in flight.
- A restore swaps in an offer with its purchase records, holds and their expiry entries.

Not compared or restored, deliberately: a pending purchase's checkout session (kept
beside its record, in the tenant's purchase sessions hash; its spec compares it once
settled, when the record has taken it in), idempotency records and rate-limit state
(short-lived), and processed-webhook markers (a redelivered webhook meets a purchase
that is no longer pending and changes nothing).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from dropgate.engine.keys import Keys
from dropgate.ids import text
from dropgate.persistence.reconcile.base import Drift, ReconcileContext, Scope
from dropgate.persistence.reconcile.generic import Found, SpecReconciler
from dropgate.persistence.reconcile.repair import reemit_chunk, stage
from dropgate.persistence.reconcile.sql import parts_of, row_sql
from dropgate.persistence.reconcile.util import chunks, sample, to_int
from dropgate.persistence.setdiff import encode
from dropgate.specs import Entity
from dropgate.specs.entities import OFFER, OFFER_HOLDS, PURCHASE

OWNER, PID = PURCHASE.owner[1] if PURCHASE.owner else "", PURCHASE.ids[0].name
STATUS, HELD = OFFER.count("reserved").when or ("", "")  # type: ignore[union-attr]
EXPIRY = OFFER_HOLDS.score.name if OFFER_HOLDS.score else ""


def _record_fields(p: dict[str, Any]) -> dict[str, str]:
    """A purchase record as its spec compares it (the Redis form of each field)."""
    out = {}
    for f in PURCHASE.compared():
        v = p.get(f.name)
        if f.compare_sql is not None and p.get(STATUS) == HELD:
            v = None  # attached without an event: PostgreSQL has it only from the next one
        elif f.redis == "flag":
            v = 1 if v else 0
        out[f.name] = "" if v is None else str(v)
    return out


class OfferReconciler(SpecReconciler):
    def __init__(self) -> None:
        super().__init__(OFFER, PURCHASE)

    async def read(self, rc: ReconcileContext, scope: Scope, spec: Entity,
                   targets: list[tuple[str, list[str]]]) -> Found:
        offers, buys = await self._read(rc, scope)
        return offers if spec is OFFER else buys

    async def _read(self, rc: ReconcileContext, scope: Scope) -> tuple[Found, Found]:
        """Per tenant, one MULTI: its purchases with its offers and their holds."""
        tenants: dict[str, set[str]] = defaultdict(set)
        for _, parts in (await rc.index(scope)).domain_parts():
            if (parts[0] == "t" and len(parts) in (4, 5) and parts[2] == "offer") or parts[2:] == ("purchases",):
                tenants[parts[1]].update(parts[3:4] if parts[2] == "offer" else ())
        named = {e for e in scope.entities or () if e.startswith((OFFER.kind + ":", PURCHASE.kind + ":"))}
        offers, buys = Found(), Found()
        rc.progress.stage("offers", len(tenants))
        for t in sorted(tenants):
            if scope.tenant_id is not None and t != scope.tenant_id:
                continue
            tk = rc.keys.tenant(t)
            ids = sorted(tenants[t])
            async with rc.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(tk.purchases())
                for o in ids:
                    pipe.hgetall(tk.offer(o))
                    pipe.zrange(tk.offer_holds(o), 0, -1, withscores=True)
                    pipe.hgetall(tk.offer_users(o))
                replies = await pipe.execute()
            records = {text(k): json.loads(v) for k, v in replies[0].items()}
            by_offer: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for p in records.values():
                by_offer[p[OWNER]].append(p)
            for i, o in enumerate(ids):
                entity = OFFER.entity(t, o)
                mine = [PURCHASE.entity(t, p[PID]) for p in by_offer.get(o, [])]
                if scope.entities is not None and entity not in named and not named.intersection(mine):
                    continue
                offers.related[entity] = mine
                fields = {text(k): text(v) for k, v in replies[1 + 3 * i].items()}
                held = {text(m): int(float(s)) for m, s in replies[2 + 3 * i]}
                users = {text(k): int(v) for k, v in replies[3 + 3 * i].items()}
                offers.members["holds"] += [encode(t, o, pid, expiry) for pid, expiry in held.items()]
                if fields:
                    offers.defs[entity] = fields
                    offers.def_members.append(encode(t, o, *(fields.get(f.name) for f in OFFER.compared())))
                    offers.drifts += _redis_counters(entity, fields, by_offer.get(o, []), held, users)
            for pid, p in records.items():
                if scope.wants(PURCHASE.entity(t, pid), t):
                    fields = _record_fields(p)
                    buys.defs[PURCHASE.entity(t, pid)] = fields
                    buys.def_members.append(encode(t, pid, *fields.values()))
            rc.progress.advance(1)
        return offers, buys

    async def settle(self, rc: ReconcileContext, spec: Any, entity: str, status: str, rv: int | None,
                     pv: int | None, ahead: bool, got: Found) -> str:
        if spec is OFFER and status != "in_flight" and (ahead or (rv is not None and (pv is None or rv > pv))):
            waiting = await rc.pending(rc.keys.tenant(spec.split(entity)[0]).partition)
            if any(b in waiting for b in got.related.get(entity, ())):
                return "in_flight"
        return status

    # -- repair -----------------------------------------------------------------------
    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        reemit_defs: set[tuple[str, str]] = set()
        reemit_buys: dict[tuple[str, str], list[str]] = defaultdict(list)
        restore: dict[tuple[str, str], int | None] = {}
        for d in drifts:
            kind, t, ident = d.entity.split(":", 2)
            ahead = d.problem in ("missing_in_postgres", "postgres_behind")
            if kind == OFFER.kind:
                if ahead and d.field != "holds":
                    reemit_defs.add((t, ident))
                elif (d.problem != "counter" or d.redis is not None) and not ahead:
                    restore.setdefault((t, ident), d.redis_version)
            else:
                rec = await rc.redis.hget(rc.keys.tenant(t).purchases(), ident)
                offer = str(json.loads(rec)[OWNER] if rec else (d.postgres or {}).get(OWNER) or "")
                if ahead and rec:
                    reemit_buys[(t, offer)].append(ident)
                elif offer:
                    restore.setdefault((t, offer), None)
        for t, o in sorted(reemit_defs | reemit_buys.keys()):
            tk = rc.keys.tenant(t)
            pids = sorted(reemit_buys.get((t, o), []))
            for i, chunk in enumerate(chunks(pids, reemit_chunk(rc, 2_000))):
                await rc.scripts.call(OFFER.resync[0], [tk.log, tk.offer(o), tk.purchases()],
                                      [rc.settings.max_backlog, t, o,
                                       "1" if (t, o) in reemit_defs and i == 0 else "0", *chunk])
            for pid in pids:
                rc.repaired(self.domain, PURCHASE.entity(t, pid), "reemitted", "purchase from Redis into the log")
            if (t, o) in reemit_defs:
                rc.repaired(self.domain, OFFER.entity(t, o), "reemitted", "definition from Redis into the log")
        for (t, o), rv in sorted(restore.items()):
            if (t, o) in reemit_defs or (t, o) in reemit_buys:
                continue  # restored next round, if still needed, once these applied
            if rv is None:
                rv = to_int(await rc.redis.hget(rc.keys.tenant(t).offer(o), "version"))
            seen = [Drift(domain=self.domain, entity="", field="", problem="differs", redis_version=rv)]
            await self.restore_one(rc, OFFER, OFFER.entity(t, o), seen)

    # -- restore ----------------------------------------------------------------------
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        """Offers, each with its purchases and holds (purchases are restored with their offer)."""
        if not scope.wants_kind(OFFER.kind):
            return 0
        return await self.restore_kind(rc, OFFER, scope, guard="*" if scope.entities is None else "-")

    async def related_rows(self, conn: Any, rows: list[Any]) -> Any:
        owners = [parts_of(r, OFFER) for r in rows]
        buys: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for p in await conn.fetch(
                f"SELECT {row_sql(PURCHASE)} FROM {PURCHASE.table} c "
                f"WHERE (c.{PURCHASE.tenant}, c.{OWNER}) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                [o[0] for o in owners], [o[1] for o in owners]):
            rec = {f.name: (True if f.redis == "flag" else json.loads(p[f.name]) if f.redis == "json"
                            else p[f.name]) for f in PURCHASE.fields
                   if p[f.name] is not None and not (f.redis == "flag" and not p[f.name])}
            buys[(p[PURCHASE.tenant or ""], p[OWNER])].append(rec)
        return buys

    async def stage_related(self, rc: ReconcileContext, pipe: Any, spec: Entity, parts: list[str], row: Any,
                            related: Any, swap: list[tuple[str, str, str]]) -> str:
        """The offer's purchase records (merged into the tenant's purchases hash), its
        entry in the partition's expiry queue at its earliest hold (so its holds keep their
        expiry; a hold already past it is released by the sweeper, with its event) and its
        event's set."""
        t, o = parts
        tk = rc.keys.tenant(t)
        mine = related.get((t, o), [])
        records = [x for p in mine for x in (p[PID], json.dumps(p, separators=(",", ":")))]
        held = [p[EXPIRY] for p in mine if p[STATUS] == HELD]
        expiry = [min(held), f"{t}:{o}"] if held else []
        swap += [await stage(rc, pipe, tk.purchases(), "hash", records, mode="m",
                             staging=Keys.staging(tk.offer(o), "restore:purchases")),
                 await stage(rc, pipe, tk.offer_hold_expiry(), "zset", expiry, mode="x",
                             staging=Keys.staging(tk.offer_holds(o), "restore:expiry")),
                 await stage(rc, pipe, tk.offers_by_event(row["event_id"]), "set", [o], mode="m",
                             staging=Keys.staging(tk.offer(o), "restore:event")),
                 await stage(rc, pipe, tk.offer_users(o), "hash",
                             [x for kv in user_units(mine).items() for x in kv])]
        return f"{t}:{o}:"


def user_units(buys: list[dict[str, Any]]) -> dict[str, int]:
    """Units each user holds or owns (max_per_user), from an offer's purchase records: what
    the offer's users hash must hold."""
    out: dict[str, int] = defaultdict(int)
    for p in buys:
        units = p.get("units") or ("held" if p[STATUS] == HELD else "sold" if p[STATUS] == "paid" else "none")
        if units != "none":
            out[p["user_id"]] += int(p["quantity"])
    return dict(out)


def _redis_counters(entity: str, fields: dict[str, str], buys: list[dict[str, Any]],
                    holds: dict[str, int], users: dict[str, int]) -> list[Drift]:
    """Redis' reserved / sold against the purchase records, its holds against the pending
    ones, its per-user units against the records."""
    rv = to_int(fields.get("version"))
    out = []
    for c in OFFER.counts:
        have, want = to_int(fields.get(c.field)), c.fold(buys)
        if have != want:
            out.append(Drift(domain=OFFER.domain, entity=entity, field=c.field, problem="counter", redis=have,
                             redis_version=rv, detail=f"Redis {c.field} {have}, but the purchase records give {want}"))
    pending = {p[PID] for p in buys if p[STATUS] == HELD}
    if set(holds) != pending:
        odd = sorted(set(holds) ^ pending)
        out.append(Drift(domain=OFFER.domain, entity=entity, field="holds", problem="counter", redis=odd,
                         redis_version=rv, detail=f"holds and pending purchases differ in Redis: {sample(odd)}"))
    want_users = user_units(buys)
    if users != want_users:
        odd = sorted(u for u in set(users) | set(want_users) if users.get(u) != want_users.get(u))
        out.append(Drift(domain=OFFER.domain, entity=entity, field="users", problem="counter", redis=odd,
                         redis_version=rv, detail=f"units per user differ from the purchase records: {sample(odd)}"))
    return out
