"""Campaign code pools: every code's type and status (with its reservation) per campaign.

One set over the scope, ``tenant, campaign, code, record`` with the record spelt as
Redis stores it (``type|status|reserve_id|reserved_ms|expires_ms|assigned_ms``, status
``a`` / ``r`` / ``s``; PostgreSQL builds the same string from its columns): Redis streams each campaign's records hash
(HSCAN), PostgreSQL hashes ``campaign_codes`` in one ``GROUP BY``; only differing
checksum buckets are fetched (1,000,000 codes in seconds). The entity is the campaign
(``codes:<tenant>:<campaign>``, as the scripts emit it), versioned by its meta hash in
Redis and by the newest row version in PostgreSQL. Within Redis, each type's
available / reserved / assigned sets must hold as many codes as the records say
(checked only when the campaign did not change during the scan).

Not restored: an unfinished multi-batch upload's "seen" set (a de-duplication aid with
a TTL; the client restarts the upload, which is idempotent).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator
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
from dropgate.persistence.reconcile.generic import SpecReconciler
from dropgate.persistence.reconcile.sql import scope_sql
from dropgate.persistence.reconcile.util import chunks, sample, to_int
from dropgate.persistence.setdiff import SEP, SqlSide, StreamSide, decode, diff_sets, encode, sql_member
from dropgate.specs import Entity
from dropgate.specs.entities import CODES

DOMAIN = CODES.domain
KIND = CODES.kind
STATUS = {"a": "available", "r": "reserved", "s": "assigned"}
SHORT = {v: k for k, v in STATUS.items()}
PER_CALL = 5_000
HSCAN_COUNT = 5_000
entity_of = CODES.entity


def _ms(name: str) -> str:
    return f"coalesce(({CODES.field(name).expr()})::text, '')"


# A row spelt as Redis stores the code's record (dg_code_pack): ``type|a`` while it has
# neither reservation nor assignment, else ``type|status|reserve_id|reserved_ms|expires_ms|assigned_ms``
# (status a / r / s).
PACKED_SQL = (
    "type || '|' || CASE status WHEN 'available' THEN 'a' WHEN 'reserved' THEN 'r' ELSE 's' END"
    " || CASE WHEN reserve_id IS NULL AND assigned_at IS NULL THEN '' ELSE"
    f" '|' || coalesce(reserve_id, '') || '|' || {_ms('reserved_ms')} || '|' || {_ms('expires_ms')}"
    f" || '|' || {_ms('assigned_ms')} END")


class CodesReconciler(SpecReconciler):
    """Packed code records per campaign (the hook: records, not a hash per entity)."""

    def __init__(self) -> None:
        super().__init__(CODES)

    # -- compare ----------------------------------------------------------------------
    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        if not scope.wants_kind(KIND):
            return out
        ordered = [(t, c) for _, (t, c) in self.targets(await rc.index(scope), scope, CODES)]
        versions: dict[str, int | None] = {}
        counter_drift: list[Drift] = []
        rc.progress.stage("codes", None)

        async def records() -> AsyncIterator[list[str]]:
            first = not versions
            for t, c in ordered:
                tk = rc.keys.tenant(t)
                before = to_int(await rc.redis.hget(tk.codes_meta(c), "version"))
                tally: Counter[bytes] = Counter()
                tag = encode(t, c, "")
                cursor = 0
                while True:
                    reply: Any = await rc.redis.hscan(tk.codes_records(c), cursor, count=HSCAN_COUNT)
                    cursor, page = reply
                    # members are the records as stored (``type|a``, ``type|r|rid|...``) less
                    # an upload mark (``#n``, Redis-only): PostgreSQL spells its rows the
                    # same way, so nothing else is parsed here
                    batch = [tag + code.decode() + SEP + packed.partition(b"#")[0].decode()
                             for code, packed in page.items()]
                    tally.update(packed[:packed.find(b"|") + 2] for packed in page.values())
                    if batch:
                        yield batch
                    if cursor == 0:
                        break
                if first:
                    entity = entity_of(t, c)
                    versions[entity], drift = await self._redis_counters(rc, t, c, before, tally)
                    counter_drift.extend(drift)

        where, args = scope_sql(CODES, scope, "")
        diff = await diff_sets(StreamSide(records, on_batch=rc.progress.advance), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM campaign_codes {where}",
            member_sql=sql_member("tenant_id", "campaign_id", "code", PACKED_SQL)))
        pg_versions = {entity_of(r["tenant_id"], r["campaign_id"]): int(r["v"]) for r in await rc.fetch(
            f"SELECT tenant_id, campaign_id, max(version) AS v FROM campaign_codes {where} GROUP BY 1, 2", *args)}
        r_codes: dict[str, dict[str, str]] = defaultdict(dict)
        p_codes: dict[str, dict[str, str]] = defaultdict(dict)
        for members, into in ((diff.only_redis, r_codes), (diff.only_postgres, p_codes)):
            for m in members:
                t, c, code, packed = decode(m)
                into[entity_of(t, c)][code] = packed
        entities = set(r_codes) | set(p_codes) | (set(versions) ^ set(pg_versions))
        entities |= {e for e in versions if e in pg_versions and versions[e] != pg_versions[e]}
        for entity in sorted(entities):
            tenant_id = CODES.split(entity)[0]
            rv, pv = versions.get(entity), pg_versions.get(entity)
            status = await rc.classify(entity, rc.keys.tenant(tenant_id).partition, rv, pv,
                                       redis_ahead=bool(r_codes.get(entity)))
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            vs: dict[str, Any] = {"redis_version": rv, "postgres_version": pv}
            rc_, pc_ = r_codes.get(entity, {}), p_codes.get(entity, {})
            both = sorted(rc_.keys() & pc_.keys())
            only_r = sorted(rc_.keys() - pc_.keys())
            only_p = sorted(pc_.keys() - rc_.keys())
            if only_r:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="codes", problem="missing_in_postgres",
                                        redis=only_r, detail=f"{len(only_r)} codes only in Redis: {sample(only_r)}",
                                        **vs))
            if only_p:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="codes", problem="missing_in_redis",
                                        postgres=only_p,
                                        detail=f"{len(only_p)} codes only in PostgreSQL: {sample(only_p)}", **vs))
            if both:
                problem = status if status in ("postgres_behind", "redis_behind") else "differs"
                out.drifts.append(Drift(
                    domain=DOMAIN, entity=entity, field="status", problem=problem,
                    redis={k: rc_[k] for k in both}, postgres={k: pc_[k] for k in both},
                    detail=f"{len(both)} codes differ: " + sample([f"{k} Redis {rc_[k]}, PostgreSQL {pc_[k]}"
                                                                   for k in both], 3), **vs))
            if not (only_r or only_p or both):
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="version", problem=status,
                                        redis=rv, postgres=pv, detail=f"version: Redis {rv}, PostgreSQL {pv}",
                                        **vs))
        out.drifts += counter_drift
        out.counts.append(KindCount(
            domain=DOMAIN, kind=KIND, checked=len(set(versions) | set(pg_versions)),
            members=max(diff.redis_count, diff.postgres_count),
            in_flight=len(out.in_flight), drift=len({d.entity for d in out.drifts})))
        return out

    async def _redis_counters(self, rc: ReconcileContext, t: str, c: str, before: int | None,
                              tally_raw: Counter[bytes]) -> tuple[int | None, list[Drift]]:
        """The campaign's version after the scan, and (if it did not move meanwhile) each
        type's sets against the records counted."""
        tk = rc.keys.tenant(t)
        tally: Counter[tuple[str, str]] = Counter()
        for prefix, n in tally_raw.items():
            ty, _, st = prefix.decode().partition("|")
            tally[(ty, STATUS.get(st, st))] += n
        meta = {text(k): text(v) for k, v in (await rc.redis.hgetall(tk.codes_meta(c))).items()}
        after = to_int(meta.get("version"))
        if after != before:
            return after, []  # moved during the scan: its sets are checked next round
        types = sorted({k[2:] for k in meta if k.startswith("t:")} | {ty for ty, _ in tally})
        async with rc.redis.pipeline(transaction=True) as pipe:
            pipe.hget(tk.codes_meta(c), "version")
            for ty in types:
                pipe.scard(tk.codes_available(c, ty))
                pipe.zcard(tk.codes_reserved(c, ty))
                pipe.scard(tk.codes_assigned(c, ty))
            replies = await pipe.execute()
        if to_int(replies[0]) != after:
            return after, []
        out: list[Drift] = []
        for i, ty in enumerate(types):
            for j, st in enumerate(("available", "reserved", "assigned")):
                have, want = int(replies[1 + 3 * i + j]), tally[(ty, st)]
                if have != want:
                    out.append(Drift(domain=DOMAIN, entity=entity_of(t, c), field=f"{ty}:{st}", problem="counter",
                                     redis=have, redis_version=after,
                                     detail=f"Redis {st} set of type {ty} holds {have}, the records say {want}"))
        return after, out

    # -- repair -----------------------------------------------------------------------
    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        by_entity: dict[str, list[Drift]] = defaultdict(list)
        for d in drifts:
            by_entity[d.entity].append(d)
        for entity, found in sorted(by_entity.items()):
            tenant_id, campaign = CODES.split(entity)
            reemit: list[str] = []
            for d in found:
                if d.field == "codes" and d.problem == "missing_in_postgres":
                    reemit += d.redis
                elif d.field == "status" and d.problem == "postgres_behind":
                    reemit += list(d.redis)
            if reemit:
                tk = rc.keys.tenant(tenant_id)
                for chunk in chunks(sorted(reemit), PER_CALL):
                    await rc.scripts.call(CODES.resync[0],
                                          [tk.log, tk.codes_meta(campaign), tk.codes_records(campaign)],
                                          [rc.settings.max_backlog, tenant_id, campaign, *chunk])
                rc.repaired(DOMAIN, entity, "reemitted", f"{len(reemit)} codes from Redis into the log")
                continue
            await self.restore_one(rc, CODES, entity, found)

    # -- restore ----------------------------------------------------------------------
    async def restore_kind(self, rc: ReconcileContext, spec: Entity, scope: Scope, *, guard: str) -> int:
        """Each campaign from one snapshot: records and per-type sets staged in chunks
        (pipelined), then swapped in with the meta hash by ``restore_codes``."""
        where, args = scope_sql(CODES, scope, "")
        restored = 0
        async with rc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            total = await conn.fetchval(f"SELECT count(*) FROM campaign_codes {where}", *args)
            rc.progress.stage("restore codes", int(total))
            current: tuple[str, str] | None = None
            state = _Staging()
            cursor = conn.cursor(
                f"""SELECT tenant_id, campaign_id, code, type, status, reserve_id,
                           {CODES.field('reserved_ms').expr()} AS r, {CODES.field('expires_ms').expr()} AS x,
                           {CODES.field('assigned_ms').expr()} AS a,
                           version
                      FROM campaign_codes {where} ORDER BY tenant_id, campaign_id""", *args, prefetch=20_000)
            async with rc.redis.pipeline(transaction=False) as pipe:
                async for row in cursor:
                    key = (row["tenant_id"], row["campaign_id"])
                    if key != current:
                        if current is not None:
                            restored += await self._finish(rc, pipe, current, state, guard)
                        current, state = key, _Staging()
                    await state.add(rc, pipe, key, row)
                if current is not None:
                    restored += await self._finish(rc, pipe, current, state, guard)
        return restored

    async def _finish(self, rc: ReconcileContext, pipe: Any, campaign: tuple[str, str], state: _Staging,
                      guard: str) -> int:
        t, c = campaign
        tk = rc.keys.tenant(t)
        await state.flush(rc, pipe, campaign, final=True)
        await rc.scripts.queue(pipe, CODES.restore,
                               [tk.codes_meta(c), tk.codes_records(c), Keys.staging(tk.codes_records(c))],
                               [guard, state.version, *sorted(state.types)])
        replies = await pipe.execute()
        return 1 if decode_result(replies[-1]).get("restored") is True else 0


class _Staging:
    """One campaign's rows, staged into Redis a few thousand at a time."""

    def __init__(self) -> None:
        self.version = 0
        self.types: set[str] = set()
        self.started: set[str] = set()
        self.records: list[str] = []
        self.sets: dict[tuple[str, str], list[Any]] = defaultdict(list)
        self.pending = 0

    async def add(self, rc: ReconcileContext, pipe: Any, campaign: tuple[str, str], row: Any) -> None:
        self.version = max(self.version, int(row["version"]))
        ty, st = row["type"], row["status"]
        self.types.add(ty)
        fields = [ty, SHORT[st], row["reserve_id"] or "", row["r"], row["x"], row["a"]]
        if fields[2] == "" and row["a"] is None:
            packed = f"{ty}|{fields[1]}"
        else:
            packed = "|".join("" if f is None else str(f) for f in fields)
        self.records += [row["code"], packed]
        if st == "reserved":
            self.sets[(ty, st)] += [row["x"], row["code"]]
        else:
            self.sets[(ty, st)].append(row["code"])
        self.pending += 1
        if self.pending >= PER_CALL:
            await self.flush(rc, pipe, campaign, final=False)

    async def flush(self, rc: ReconcileContext, pipe: Any, campaign: tuple[str, str], *, final: bool) -> None:
        t, c = campaign
        tk = rc.keys.tenant(t)
        staged: list[tuple[str, str, list[Any]]] = [(Keys.staging(tk.codes_records(c)), "hash", self.records)]
        for (ty, st), members in self.sets.items():
            target = {"available": tk.codes_available, "reserved": tk.codes_reserved,
                      "assigned": tk.codes_assigned}[st](c, ty)
            staged.append((Keys.staging(target), "zset" if st == "reserved" else "set", members))
        for key, mode, members in staged:
            if members:
                await rc.scripts.queue(pipe, "restore_members", [key],
                                       ["0" if key in self.started else "1", mode, *members])
                self.started.add(key)
        rc.progress.advance(self.pending)
        self.records, self.sets, self.pending = [], defaultdict(list), 0
        if not final:
            await pipe.execute()

