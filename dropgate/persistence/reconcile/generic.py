"""One reconciler for every entity kind, driven by its spec (dropgate/specs).

For each kind in scope, ``compare`` diffs two kinds of sets between the stores (see
``persistence/setdiff.py``): the entities' compared fields (``tenant, ids..., fields...``) and each
member collection (``tenant, ids..., member...``); within each store, every counter
must equal what its members (Redis) or rows (PostgreSQL) give. ``recount``,
``repair`` and ``restore`` follow the policy of docs/reconcile.md. Domains that
really differ subclass it: offers (a purchase's version bump is in flight; purchases
are JSON records), codes (packed records) and the ledger (balances come from rows).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from functools import partial
from typing import Any

from dropgate.ids import text
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Scope,
)
from dropgate.persistence.reconcile.repair import SpecBase
from dropgate.persistence.reconcile.sql import and_where, parts_of, scope_sql, stale_sql
from dropgate.persistence.reconcile.util import chunks, field_drifts, listed, only_in, sample, to_int
from dropgate.persistence.setdiff import (
    SetDiff,
    SqlSide,
    StreamSide,
    decode,
    diff_sets,
    encode,
    set_members,
    sql_member,
)
from dropgate.specs import Entity, Members


class Found:
    """What Redis holds for one kind in scope: fields, member strings, counter drift."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, str]] = {}
        self.def_members: list[str] = []
        self.members: dict[str, list[str]] = defaultdict(list)
        self.streamed: dict[str, list[tuple[str, str]]] = defaultdict(list)   # set name -> (key, tag)
        self.drifts: list[Drift] = []
        self.related: dict[str, list[str]] = {}   # entity -> entities whose events bump it (hooks)


class SpecReconciler(SpecBase):
    """Compare the kinds of ``specs`` (one domain); repair and restore: ``SpecBase``."""

    def targets(self, index: Any, scope: Scope, spec: Entity) -> list[tuple[str, list[str]]]:
        """The entities whose keys the index holds (hash or collections), in scope (a
        global entity's tenant is read from its hash)."""
        n = len(spec.ids)
        found: dict[str, list[str]] = {}
        if not spec.words:
            shape = ("apikey", None) if spec.global_ else ("tenant", None)
            rows = [[parts[1]] for _, parts in index.find(*shape)]
        else:
            rows = [[parts[1], *parts[3:3 + n]] for _, parts in index.domain_parts()
                    if len(parts) in (3 + n, 4 + n) and parts[0] == "t" and parts[2] == spec.words[0]]
        for parts in rows:
            entity = spec.entity(*parts)
            if scope.wants(entity, scope.tenant_id if spec.global_ else parts[0]):
                found[entity] = parts
        return sorted(found.items())

    # -- compare ----------------------------------------------------------------------
    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        for spec in self.specs:
            if scope.wants_kind(spec.kind):
                part = await self.compare_kind(rc, scope, spec)
                out.counts += part.counts
                out.drifts += part.drifts + await self.pg_counters(rc, scope, spec)
                out.in_flight |= part.in_flight
        return out

    async def read(self, rc: ReconcileContext, scope: Scope, spec: Entity,
                   targets: list[tuple[str, list[str]]]) -> Found:
        """Each entity's hash, with its collections and counters in the same MULTI."""
        got = Found()
        rc.progress.stage(f"{spec.kind}s", len(targets))
        for chunk in chunks(targets, 256):
            async with rc.redis.pipeline(transaction=True) as pipe:
                for _, parts in chunk:
                    pipe.hgetall(self.key(rc, spec, parts))
                    for m in spec.members:
                        key = self.key(rc, spec, parts, m.key)
                        if m.redis == "zset":
                            pipe.zrange(key, 0, -1, withscores=True)
                        else:
                            (pipe.scard if m.redis == "set" else pipe.hgetall)(key)
                        if m.tally:
                            pipe.hgetall(self.key(rc, spec, parts, m.tally[1]))
                replies = iter(await pipe.execute())
            for entity, parts in chunk:
                raw = next(replies)
                fields = {text(k): text(v) for k, v in raw.items()}
                if spec.global_ and scope.tenant_id is not None and fields.get("tenant_id") != scope.tenant_id:
                    fields = {}
                have: dict[str, Any] = {}
                for m in spec.members:
                    have[m.name] = self._members(rc, got, spec, m, parts, next(replies))
                    if m.tally:
                        have[m.tally[0]] = {text(k): int(v) for k, v in next(replies).items()}
                if fields:
                    got.defs[entity] = fields
                    got.def_members.append(encode(*parts, *(fields.get(f.name) for f in spec.compared())))
                    got.drifts += self.redis_counters(spec, entity, fields, have)
            rc.progress.advance(len(chunk))
        return got

    def _members(self, rc: ReconcileContext, got: Found, spec: Entity, m: Members, parts: list[str],
                 reply: Any) -> Any:
        if m.redis == "set":  # streamed by SSCAN later: a set may be large
            got.streamed[m.name].append((self.key(rc, spec, parts, m.key), encode(*parts, "")))
            return int(reply)
        if m.redis == "zset":
            scored = {text(k): int(float(s)) for k, s in reply}
            got.members[m.name] += [encode(*parts, k, s) for k, s in scored.items()]
            return scored
        records = {text(k): json.loads(v) for k, v in reply.items()}
        got.members[m.name] += [encode(*parts, k, *(r.get(f.name) for f in m.fields)) for k, r in records.items()]
        return records

    def redis_counters(self, spec: Entity, entity: str, fields: dict[str, str], have: dict[str, Any]) -> list[Drift]:
        """Redis' counters against the members they count (read in the same MULTI)."""
        out: list[Drift] = []
        rv = to_int(fields.get("version"))
        for m in spec.members:
            counted = have[m.name]
            for c in spec.counts:
                if c.table != m.table or m.where:
                    continue
                want = counted if isinstance(counted, int) else c.fold(counted.values())
                value = to_int(fields.get(c.field))
                if value != want:
                    out.append(Drift(domain=spec.domain, entity=entity, field=c.field, problem="counter",
                                     redis=value, redis_version=rv,
                                     detail=f"Redis {c.field} {value}, but the {m.name} in Redis give {want}"))
            if m.tally:
                name, _, by = m.tally
                tally = dict(Counter(r[by] for r in counted.values()))
                if tally != have[name]:
                    odd = sorted(k for k in tally.keys() | have[name].keys() if tally.get(k) != have[name].get(k))
                    out.append(Drift(domain=spec.domain, entity=entity, field=name, problem="counter", redis=odd,
                                     redis_version=rv, detail=f"{name} differ from the {m.name}: {sample(odd)}"))
        return out

    def member_side(self, rc: ReconcileContext, scope: Scope, spec: Entity, m: Members) -> SqlSide:
        where, args = scope_sql(spec, scope, "u", columns=m.link, where=m.where)
        values = [f.expr("u") for f in m.fields] + ([m.score.expr("u")] if m.score else [])
        return SqlSide(rc.fetch, args=args, from_sql=f"FROM {m.table} u {where}",
                       member_sql=sql_member(*(f"u.{c}" for c in m.link), f"u.{m.id}", *values))

    async def compare_kind(self, rc: ReconcileContext, scope: Scope, spec: Entity) -> Comparison:
        out = Comparison()
        got = await self.read(rc, scope, spec, self.targets(await rc.index(scope), scope, spec))
        where, args = scope_sql(spec, scope)
        sides = [diff_sets(StreamSide(listed(got.def_members)), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM {spec.table} c {where}",
            member_sql=sql_member(*spec.id_exprs("c"), *(f.expr("c", compare=True) for f in spec.compared()))))]
        for m in spec.members:
            redis_side = StreamSide(partial(set_members, rc.redis, got.streamed[m.name]) if m.redis == "set"
                                    else listed(got.members[m.name]))
            sides.append(diff_sets(redis_side, self.member_side(rc, scope, spec, m)))
        defs, *member_diffs = await asyncio.gather(*sides)
        await self.classify(rc, spec, out, got, defs, dict(zip((m.name for m in spec.members), member_diffs,
                                                               strict=True)))
        out.drifts += got.drifts
        n = len(spec.id_columns)
        pg_only = {spec.entity(*decode(m)[:n]) for m in defs.only_postgres} - got.defs.keys()
        out.counts.append(KindCount(
            domain=spec.domain, kind=spec.kind, checked=defs.redis_count + len(pg_only),
            members=max((max(d.redis_count, d.postgres_count) for d in member_diffs), default=0),
            in_flight=len(out.in_flight)))
        return out

    async def classify(self, rc: ReconcileContext, spec: Entity, out: Comparison, got: Found, defs: SetDiff,
                       members: dict[str, SetDiff]) -> None:
        n = len(spec.id_columns)
        names = [f.name for f in spec.compared()]
        r_only = {spec.entity(*decode(m)[:n]) for m in defs.only_redis}
        p_only = {spec.entity(*v[:n]): dict(zip(names, v[n:], strict=True))
                  for v in map(decode, defs.only_postgres)}
        only: dict[tuple[str, str], dict[str, list[str]]] = {}
        zsets = {m.name: m.redis == "zset" for m in spec.members}
        for name, diff in members.items():
            for side, found in (("redis", diff.only_redis), ("postgres", diff.only_postgres)):
                into = only.setdefault((name, side), defaultdict(list))
                for v in map(decode, found):
                    into[spec.entity(*v[:n])].append("@".join(v[n:n + 2]) if zsets[name] else v[n])
        cross = r_only | p_only.keys() | {e for d in only.values() for e in d}
        for entity in sorted(cross):
            parts = spec.split(entity)
            r = got.defs.get(entity)
            g = p_only[entity] if entity in p_only else (None if entity in r_only or r is None else r)
            if not spec.versioned:  # 0 stands for "present", so classify can tell who lacks it
                rv, pv = (0 if r is not None else None), (0 if g is not None else None)
            else:
                rv = to_int(r.get("version")) if r else None
                pv = to_int(g.get("version")) if g else None
            ahead = any(entity in d for (_, side), d in only.items() if side == "redis")
            status: str = await rc.classify(entity, self.partition(rc, spec, parts), rv, pv,
                                       versioned=spec.versioned, redis_ahead=ahead)
            status = await self.settle(rc, spec, entity, status, rv, pv, ahead, got)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            field_drifts(out, spec, entity, status, r, g, rv, pv)
            out.drifts += [only_in(spec.domain, entity, name, side, sorted(d[entity]), redis_version=rv,
                                   postgres_version=pv) for (name, side), d in sorted(only.items()) if entity in d]

    async def settle(self, rc: ReconcileContext, spec: Entity, entity: str, status: str, rv: int | None,
                     pv: int | None, ahead: bool, got: Found) -> str:
        """A domain's last word on whether a difference is in flight (offers)."""
        return status

    async def pg_counters(self, rc: ReconcileContext, scope: Scope, spec: Entity) -> list[Drift]:
        """PostgreSQL's trigger-kept counters against the rows they count."""
        if not spec.counts:
            return []
        where, args = scope_sql(spec, scope)
        ids = ", ".join(f"{e} AS _{i}" for i, e in enumerate(spec.id_exprs("c")))
        values = ", ".join(f"c.{c.col} AS have_{i}, {c.sql(spec, 'c')} AS want_{i}" for i, c in enumerate(spec.counts))
        version = "c.version" if spec.versioned else "NULL::bigint"
        rows = await rc.fetch(f"SELECT {ids}, {version} AS version, {values} FROM {spec.table} c {where} "
                              f"{and_where(where)} ({stale_sql(spec)})", *args)
        out: list[Drift] = []
        for r in rows:
            for i, c in enumerate(spec.counts):
                if r[f"have_{i}"] != r[f"want_{i}"]:
                    out.append(Drift(domain=spec.domain, entity=spec.entity(*parts_of(r, spec)), field=c.field,
                                     problem="counter", postgres=r[f"have_{i}"], postgres_version=r["version"],
                                     detail=f"PostgreSQL {c.field} {r[f'have_{i}']}, but the {c.rows} "
                                            f"give {r[f'want_{i}']}"))
        return out
