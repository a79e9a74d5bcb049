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

Staged and abandoned uploads (#21) are counted, restored and repaired as
docs/reconcile.md says (Restore): a staged upload's codes count as staged, not
available; a restore keeps the meta's ``uploads`` counter and discards an upload still
pending in PostgreSQL (its staging was in the Redis being replaced).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

from dropgate.engine.abandoned import abandoned, discard_abandoned, live_counts, pending_uploads
from dropgate.engine.keys import Keys
from dropgate.engine.redisclient import scan_pages
from dropgate.engine.scripts import decode_result
from dropgate.ids import text
from dropgate.persistence.appliers.codes import discard_uploads
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Scope,
)
from dropgate.persistence.reconcile.generic import SpecReconciler
from dropgate.persistence.reconcile.repair import PER_CALL, stage
from dropgate.persistence.reconcile.sql import and_where, scope_sql
from dropgate.persistence.reconcile.util import chunks, only_in, sample, to_int
from dropgate.persistence.setdiff import SEP, SqlSide, StreamSide, decode, diff_sets, encode, sql_member
from dropgate.specs import Entity
from dropgate.specs.base import SQL_MS
from dropgate.specs.coderecord import PACKED_SQL, pack_record, parse_record
from dropgate.specs.entities import CODES

DOMAIN = CODES.domain
KIND = CODES.kind
HSCAN_COUNT = 5_000
entity_of = CODES.entity


def _tally_key(packed: bytes) -> bytes:
    """``type|status``, but ``type|a#n`` whole for an available code an upload inserted:
    while upload ``n`` is staged (pending) its codes wait in its staged set, not the
    available set, and the counters must tell them apart."""
    i = packed.find(b"|") + 2
    return packed if packed[i:i + 1] == b"#" and packed[i - 1:i] == b"a" else packed[:i]


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
        uploads: dict[str, int] = {}  # each meta's ``uploads`` counter
        rc.progress.stage("codes", None)

        async def records() -> AsyncIterator[list[str]]:
            first = not versions
            for t, c in ordered:
                tk = rc.keys.tenant(t)
                before = to_int(await rc.redis.hget(tk.codes_meta(c), "version"))
                tally: Counter[bytes] = Counter()
                tag = encode(t, c, "")
                async for page in scan_pages(rc.redis.hscan, tk.codes_records(c), count=HSCAN_COUNT):
                    # members are the records as stored (``type|a``, ``type|r|rid|...``) less
                    # an upload mark (``#n``, Redis-only): PostgreSQL spells its rows the
                    # same way, so nothing else is parsed here
                    tally.update(map(_tally_key, page.values()))
                    if page:
                        yield [tag + code.decode() + SEP + packed.partition(b"#")[0].decode()
                               for code, packed in page.items()]
                if first:
                    entity = entity_of(t, c)
                    versions[entity], drift = await self._redis_counters(rc, t, c, before, tally, uploads)
                    counter_drift.extend(drift)

        where, args = scope_sql(CODES, scope, "")
        diff = await diff_sets(StreamSide(records, on_batch=rc.progress.advance), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM campaign_codes {where}",
            member_sql=sql_member("tenant_id", "campaign_id", "code", PACKED_SQL)))
        # per campaign, the newest row version and the highest upload number PostgreSQL
        # records, on its rows or an upload still pending (restore writes it into the meta)
        pg_rows = await rc.fetch(
            f"SELECT tenant_id, campaign_id, max(v) AS v, max(u) AS u FROM (SELECT tenant_id, campaign_id,"
            f" version AS v, upload AS u FROM campaign_codes {where} UNION ALL SELECT tenant_id, campaign_id,"
            f" NULL, upload FROM campaign_pending_uploads {where}) s GROUP BY 1, 2", *args)
        pg_versions = {entity_of(r["tenant_id"], r["campaign_id"]): int(r["v"]) for r in pg_rows if r["v"] is not None}
        pg_uploads = {entity_of(r["tenant_id"], r["campaign_id"]): int(r["u"]) for r in pg_rows if r["u"] is not None}
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
            out.drifts += [only_in(DOMAIN, entity, "codes", side, items, **vs)
                           for side, items in (("redis", only_r), ("postgres", only_p)) if items]
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
        # a meta whose ``uploads`` counter is below a number PostgreSQL records: Redis lost
        # it, and the next upload would take a number in use (never in flight: PostgreSQL
        # learns numbers from Redis); no pool in Redis is a drift of its codes already
        for entity, number in sorted(pg_uploads.items()):
            have = uploads.get(entity, 0)
            if versions.get(entity) is not None and have < number:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="uploads", problem="redis_behind",
                                        redis=have, postgres=number, redis_version=versions[entity],
                                        detail=f"upload counter: Redis {have}, PostgreSQL records upload {number}"))
        out.counts.append(KindCount(
            domain=DOMAIN, kind=KIND, checked=len(set(versions) | set(pg_versions)),
            members=max(diff.redis_count, diff.postgres_count),
            in_flight=len(out.in_flight)))
        return out

    async def _redis_counters(self, rc: ReconcileContext, t: str, c: str, before: int | None,
                              tally_raw: Counter[bytes], uploads: dict[str, int]) -> tuple[int | None, list[Drift]]:
        """The campaign's version after the scan, and (if it did not move meanwhile) each
        type's sets against the records counted.

        An upload still staged (meta ``p:<n>`` = its upload id, #21) holds its new codes
        in its staged set per type: records ``type|a#n`` count there, not as available,
        while that set exists (a type already committed moved its set into the pool).
        A staged set must hold as many codes as the records say."""
        tk = rc.keys.tenant(t)
        tally: Counter[tuple[str, str]] = Counter()
        marked: Counter[tuple[str, int]] = Counter()  # available records an upload inserted
        for prefix, n in tally_raw.items():
            rec = parse_record(prefix.decode())
            tally[(rec.type, rec.status)] += n
            if rec.upload is not None:
                marked[(rec.type, rec.upload)] += n
        meta = {text(k): text(v) for k, v in (await rc.redis.hgetall(tk.codes_meta(c))).items()}
        after = to_int(meta.get("version"))
        uploads[entity_of(t, c)] = to_int(meta.get("uploads")) or 0
        if after != before:
            return after, []  # moved during the scan: its sets are checked next round
        pending = pending_uploads(meta)
        staged = sorted((ty, n) for ty, n in marked if n in pending)
        # a pending upload none of whose sets exist was abandoned (its server died, #21):
        # its records are neither staged nor live, a drift --repair discards
        uploads_types: dict[int, set[str]] = defaultdict(set)
        for ty, n in staged:
            uploads_types[n].add(ty)
        gone = set(await abandoned(rc.redis, tk, c, pending, uploads_types))
        # of those, a type already committed (killed between two commits) is live
        live = await live_counts(rc.redis, tk, c, gone)
        types = sorted({k[2:] for k in meta if k.startswith("t:")} | {ty for ty, _ in tally})
        async with rc.redis.pipeline(transaction=True) as pipe:
            pipe.hget(tk.codes_meta(c), "version")
            for ty in types:
                pipe.scard(tk.codes_available(c, ty))
                pipe.zcard(tk.codes_reserved(c, ty))
                pipe.scard(tk.codes_assigned(c, ty))
            for ty, n in staged:
                pipe.scard(tk.codes_staged(c, pending[n], ty))
            replies = await pipe.execute()
        if to_int(replies[0]) != after:
            return after, []
        out: list[Drift] = []
        entity = entity_of(t, c)
        for n in sorted(gone):
            count = sum(marked[(ty, m)] - live.get((n, ty), 0) for ty, m in staged if m == n)
            out.append(Drift(domain=DOMAIN, entity=entity, field=f"upload:{n}", problem="abandoned",
                             redis=count, redis_version=after,
                             detail=f"upload {n} is pending but its staging expired (its server died):"
                                    f" {count} codes neither staged nor live"))
        for k, (ty, n) in enumerate(staged):
            have = int(replies[1 + 3 * len(types) + k])
            if n in gone:
                tally[(ty, "available")] -= marked[(ty, n)] - live.get((n, ty), 0)
                continue
            if have == 0:
                continue  # committed (its set joined the pool) or nothing of this type staged
            want = marked[(ty, n)]
            tally[(ty, "available")] -= want
            if have != want:
                out.append(Drift(domain=DOMAIN, entity=entity, field=f"{ty}:staged:{n}", problem="counter",
                                 redis=have, redis_version=after,
                                 detail=f"Redis staged set of upload {n} type {ty} holds {have},"
                                        f" the records say {want}"))
        for i, ty in enumerate(types):
            for j, st in enumerate(("available", "reserved", "assigned")):
                have, want = int(replies[1 + 3 * i + j]), tally[(ty, st)]
                if have != want:
                    out.append(Drift(domain=DOMAIN, entity=entity, field=f"{ty}:{st}", problem="counter",
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
            numbers = {int(d.field.partition(":")[2]) for d in found if d.problem == "abandoned"}
            if numbers:
                tk = rc.keys.tenant(tenant_id)
                discarded = await discard_abandoned(rc.redis, rc.scripts, tk, tenant_id, campaign,
                                                    only=numbers)
                for n, removed in sorted(discarded.items()):
                    rc.repaired(DOMAIN, entity, "discarded",
                                f"abandoned upload {n}: {removed} codes (codes.discarded for PostgreSQL)")
                found = [d for d in found if d.problem != "abandoned"]
                if not found:
                    continue
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
    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        """Each campaign's pool (``restore_kind``) and its saved definition: how many
        pools and definitions were restored."""
        if not scope.wants_kind(KIND):
            return 0
        guard = "*" if scope.entities is None else "-"
        pools = await self.restore_kind(rc, CODES, scope, guard=guard)
        definitions = await self.restore_definitions(rc, scope, guard=guard)
        return pools + definitions

    async def restore_definitions(self, rc: ReconcileContext, scope: Scope, *, guard: str) -> int:
        """The definitions ``POST``/``PATCH /v1/campaigns`` saved (``campaign_save``'s hash:
        name, reservation TTL, low watermark, types, its own ``defversion``) from the
        ``campaigns`` rows. A campaign an upload created has no saved definition (version
        0): its types live in the pool's meta hash, restored with the pool."""
        where, args = scope_sql(CODES, scope, "")
        rows = await rc.fetch(
            f"""SELECT tenant_id, campaign_id, name, types, reservation_ttl_s, low_watermark,
                       {SQL_MS.format('created_at')} AS created_ms, version
                  FROM campaigns {where} {and_where(where)} version > 0""",
            *args)
        async with rc.redis.pipeline(transaction=False) as pipe:
            for r in rows:
                pairs: list[Any] = ["created_ms", r["created_ms"], "defversion", r["version"]]
                for name, value in (("name", r["name"] or None), ("ttl_s", r["reservation_ttl_s"]),
                                    ("low_wm", r["low_watermark"])):
                    if value is not None:
                        pairs += [name, value]
                pairs += [x for t in r["types"] for x in (f"t:{t}", 1)]
                key = rc.keys.tenant(r["tenant_id"]).codes_def(r["campaign_id"])
                await rc.scripts.queue(pipe, "restore_hash", [key], [guard, "replace", "", *pairs])
            replies = await pipe.execute() if rows else []
        return sum(1 for raw in replies if decode_result(raw).get("restored") is True)

    async def restore_kind(self, rc: ReconcileContext, spec: Entity, scope: Scope, *, guard: str) -> int:
        """Each campaign from one snapshot: records and per-type sets staged in chunks
        (pipelined), then swapped in with the meta hash by ``restore_codes``. An upload
        still pending in PostgreSQL stays out of the pool (a type it already committed
        was live: kept), and its rows go from PostgreSQL once the pool is swapped in."""
        where, args = scope_sql(CODES, scope, "")
        restored = 0
        dropped: list[tuple[str, str, list[int]]] = []
        async with rc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            total = await conn.fetchval(f"SELECT count(*) FROM campaign_codes {where}", *args)
            created = {(r["tenant_id"], r["campaign_id"]): r["ms"] for r in await conn.fetch(
                f"SELECT tenant_id, campaign_id, {SQL_MS.format('created_at')} AS ms FROM campaigns {where}",
                *args)}
            # campaign -> its pending uploads -> the types each already committed (live)
            pending: dict[tuple[str, str], dict[int, set[str]]] = defaultdict(dict)
            for r in await conn.fetch(
                    f"SELECT tenant_id, campaign_id, upload, committed_types FROM campaign_pending_uploads"
                    f" {where}", *args):
                pending[(r["tenant_id"], r["campaign_id"])][int(r["upload"])] = set(r["committed_types"])
            rc.progress.stage("restore codes", int(total))
            current: tuple[str, str] | None = None
            state = _Staging()
            cursor = conn.cursor(
                f"""SELECT tenant_id, campaign_id, code, type, status, reserve_id,
                           {CODES.field('reserved_ms').expr()} AS r, {CODES.field('expires_ms').expr()} AS x,
                           {CODES.field('assigned_ms').expr()} AS a,
                           version, assigned_to, upload
                      FROM campaign_codes {where} ORDER BY tenant_id, campaign_id""", *args, prefetch=20_000)

            async def finish(campaign: tuple[str, str], state: _Staging) -> int:
                done = 0  # a campaign whose every row is a pending upload's has no pool to restore
                if state.types:
                    tk, c = rc.keys.tenant(campaign[0]), campaign[1]
                    await state.flush(rc, pipe, campaign, final=True)
                    await rc.scripts.queue(pipe, CODES.restore,
                                           [tk.codes_meta(c), tk.codes_records(c), Keys.staging(tk.codes_records(c))],
                                           [guard, state.version, created.get(campaign) or "", state.uploads,
                                            *sorted(state.types)])
                    done = 1 if decode_result((await pipe.execute())[-1]).get("restored") is True else 0
                if campaign in pending and (done or (not state.types and guard == "*")):
                    dropped.append((*campaign, sorted(pending[campaign])))
                return done

            async with rc.redis.pipeline(transaction=False) as pipe:
                async for row in cursor:
                    key = (row["tenant_id"], row["campaign_id"])
                    if key != current:
                        if current is not None:
                            restored += await finish(current, state)
                        # an upload left pending keeps its number even were its rows gone
                        current, state = key, _Staging(uploads=max(pending.get(key, ()), default=0))
                    staged = pending.get(key, {}).get(int(row["upload"])) if row["upload"] is not None else None
                    if (staged is not None and row["type"] not in staged
                            and row["status"] == "available" and row["reserve_id"] is None):
                        rc.progress.advance(1)
                        continue  # a pending upload's code: not reservable (see above)
                    await state.add(rc, pipe, key, row)
                if current is not None:
                    restored += await finish(current, state)
        for t, c, numbers in dropped:  # as the codes.discarded applier: staged and pending rows
            async with rc.pool.acquire() as conn, conn.transaction():
                await discard_uploads(conn, t, c, numbers)
        return restored


class _Staging:
    """One campaign's rows, staged into Redis a few thousand at a time."""

    def __init__(self, *, uploads: int = 0) -> None:
        self.version = 0
        self.uploads = uploads  # the highest upload number: the meta's ``uploads`` counter
        self.types: set[str] = set()
        self.started: set[str] = set()
        self.records: list[str] = []
        self.assigned_to: list[str] = []  # code, user pairs (codes_assigned_to)
        self.sets: dict[tuple[str, str], list[Any]] = defaultdict(list)
        self.pending = 0

    async def add(self, rc: ReconcileContext, pipe: Any, campaign: tuple[str, str], row: Any) -> None:
        self.version = max(self.version, int(row["version"]))
        if row["upload"] is not None:
            self.uploads = max(self.uploads, int(row["upload"]))
        ty, st = row["type"], row["status"]
        self.types.add(ty)
        self.records += [row["code"], pack_record(ty, st, row["reserve_id"], row["r"], row["x"], row["a"])]
        if row["assigned_to"] is not None:
            self.assigned_to += [row["code"], row["assigned_to"]]
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
        staged = [(tk.codes_records(c), "hash", self.records), (tk.codes_assigned_to(c), "hash", self.assigned_to)]
        for (ty, st), members in self.sets.items():
            target = {"available": tk.codes_available, "reserved": tk.codes_reserved,
                      "assigned": tk.codes_assigned}[st](c, ty)
            staged.append((target, "zset" if st == "reserved" else "set", members))
        for key, kind, members in staged:
            if members:
                await stage(rc, pipe, key, kind, members, fresh=key not in self.started)
                self.started.add(key)
        rc.progress.advance(self.pending)
        self.records, self.assigned_to, self.sets, self.pending = [], [], defaultdict(list), 0
        if not final:
            await pipe.execute()

