"""Comparing two large sets by checksums over hash ranges, bisecting only where they differ.

A set is any collection of strings that both stores can produce: invite uses as
``tenant<US>code<US>user``, code statuses as ``campaign<US>code<US>status``, entity
definitions as their canonical field tuples. Each member hashes to 60 bits (the first
15 hex digits of its MD5, computed identically by Python and by PostgreSQL). The hash
space is cut into buckets by the top bits of the hash; each side reports, per bucket,
``(count, sum of hashes)``. Buckets that agree are done; differing buckets are cut
finer (``BITS_PER_LEVEL`` more bits) while that still narrows things down, and the
members of the remaining differing buckets are fetched and compared as sets.

So a million equal members cost one pass on each side (the PostgreSQL side is one
``GROUP BY`` in the server; the Redis side streams members through Python, which
blocks nothing in Redis), and a handful of differences cost one more pass that
returns only the members of a few buckets: no row-by-row transfer.

Nothing here knows an entity: reconcile (``persistence/reconcile/``) builds its
members from the specs, benchmarks and tests use the same comparison directly.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from dropgate.engine.redisclient import scan_pages
from dropgate.ids import text

HASH_BITS = 60
BITS_PER_LEVEL = 12
# Fetch the members of the differing buckets once they hold at most this many ...
LEAF_MEMBERS = 100_000
# ... or once this share of the buckets differs (cutting finer would not narrow it).
LEAF_SHARE = 0.25
# A Python-side stream of at most this many members is kept in memory after its
# first pass, so a small set costs one pass even when it differs.
KEEP_MEMBERS = 200_000
SEP = "\x1f"

# PostgreSQL's version of member_hash(): the same 60 bits, as a non-negative bigint.
SQL_HASH = "('x' || lpad(substr(md5({0}), 1, 15), 16, '0'))::bit(64)::bigint"

_md5 = hashlib.md5

Buckets = dict[int, tuple[int, int]]


def member_hash(member: str) -> int:
    return int.from_bytes(_md5(member.encode()).digest()[:8], "big") >> 4


def encode(*fields: object) -> str:
    """One member from its fields (``None`` as the empty string)."""
    return SEP.join("" if f is None else str(f) for f in fields)


def decode(member: str) -> list[str]:
    return member.split(SEP)


def sql_member(*expressions: str) -> str:
    """A member built in SQL, field by field, as ``encode`` does (NULL -> '')."""
    return " || chr(31) || ".join(f"coalesce(({e})::text, '')" for e in expressions)


class MemberSide(Protocol):
    """One store's view of the set."""

    async def aggregate(self, parent_bits: int, parents: set[int] | None, bits: int) -> Buckets:
        """Per bucket of the top ``bits`` hash bits: (count, sum of hashes), over the
        members whose top ``parent_bits`` bits are in ``parents`` (all when None)."""
        ...

    async def members(self, bits: int, buckets: set[int]) -> set[str]:
        """The members whose top ``bits`` hash bits are in ``buckets``."""
        ...


Producer = Callable[[], AsyncIterator[Sequence[str]]]
Fetch = Callable[..., Awaitable[Sequence[Any]]]


class StreamSide:
    """Members streamed through Python (Redis: SSCAN, pipelined reads); hashed here.

    ``producer`` is called once per pass and yields batches of members. A small set
    is kept from its first pass, so later passes cost nothing.
    """

    def __init__(self, producer: Producer, *, on_batch: Callable[[int], None] | None = None) -> None:
        self._producer = producer
        self._kept: list[tuple[int, str]] | None = None
        self._on_batch = on_batch
        self.passes = 0

    async def _iterate(self) -> AsyncIterator[Iterable[tuple[int, str]]]:
        if self._kept is not None:
            yield self._kept
            return
        self.passes += 1
        kept: list[tuple[int, str]] | None = [] if self.passes == 1 else None
        async for batch in self._producer():
            hashed = [(member_hash(m), m) for m in batch]
            if kept is not None:
                kept.extend(hashed)
                if len(kept) > KEEP_MEMBERS:
                    kept = None
            if self._on_batch is not None:
                self._on_batch(len(hashed))
            yield hashed
        if kept is not None:
            self._kept = kept

    async def aggregate(self, parent_bits: int, parents: set[int] | None, bits: int) -> Buckets:
        counts: dict[int, int] = {}
        sums: dict[int, int] = {}
        parent_shift, shift = HASH_BITS - parent_bits, HASH_BITS - bits
        async for batch in self._iterate():
            for h, _ in batch:
                if parents is not None and (h >> parent_shift) not in parents:
                    continue
                b = h >> shift
                counts[b] = counts.get(b, 0) + 1
                sums[b] = sums.get(b, 0) + h
        return {b: (n, sums[b]) for b, n in counts.items()}

    async def members(self, bits: int, buckets: set[int]) -> set[str]:
        shift = HASH_BITS - bits
        found: set[str] = set()
        async for batch in self._iterate():
            found.update(m for h, m in batch if (h >> shift) in buckets)
        return found


class SqlSide:
    """Members produced by a PostgreSQL query; hashing and grouping run in the server.

    ``fetch`` runs a query (``rc.fetch``: all in the round's snapshot, so the passes of
    one comparison see the same rows; or ``pool.fetch``). ``member_sql`` is an
    expression giving the member (see ``sql_member``), ``from_sql`` the rest of the
    query (``FROM ... WHERE ...``) using ``$1..$n`` for ``args``.
    """

    def __init__(self, fetch: Fetch, *, member_sql: str, from_sql: str, args: Sequence[Any] = ()) -> None:
        self._fetch = fetch
        self._base = f"SELECT {member_sql} AS m {from_sql}"
        self._args = list(args)
        self.queries = 0

    def _hash(self) -> str:
        return SQL_HASH.format("m")

    async def aggregate(self, parent_bits: int, parents: set[int] | None, bits: int) -> Buckets:
        n = len(self._args)
        where = ""
        args: list[Any] = [*self._args, HASH_BITS - bits]
        if parents is not None:
            where = f"WHERE (h >> ${n + 2}) = ANY(${n + 3}::bigint[])"
            args += [HASH_BITS - parent_bits, sorted(parents)]
        sql = (f"SELECT h >> ${n + 1} AS b, count(*) AS n, sum(h) AS s "
               f"FROM (SELECT {self._hash()} AS h FROM ({self._base}) q) hq {where} GROUP BY 1")
        self.queries += 1
        rows = await self._fetch(sql, *args)
        return {int(r["b"]): (int(r["n"]), int(r["s"])) for r in rows}

    async def members(self, bits: int, buckets: set[int]) -> set[str]:
        n = len(self._args)
        sql = (f"SELECT m FROM ({self._base}) q "
               f"WHERE ({self._hash()} >> ${n + 1}) = ANY(${n + 2}::bigint[])")
        self.queries += 1
        rows = await self._fetch(sql, *self._args, HASH_BITS - bits, sorted(buckets))
        return {r["m"] for r in rows}


@dataclass
class SetDiff:
    only_redis: set[str] = field(default_factory=set)
    only_postgres: set[str] = field(default_factory=set)
    redis_count: int = 0
    postgres_count: int = 0
    levels: int = 0
    buckets_fetched: int = 0

    @property
    def equal(self) -> bool:
        return not self.only_redis and not self.only_postgres


def _differing(a: Buckets, b: Buckets) -> set[int]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


async def diff_sets(redis_side: MemberSide, postgres_side: MemberSide, *,
                    bits_per_level: int = BITS_PER_LEVEL, leaf_members: int = LEAF_MEMBERS) -> SetDiff:
    """The members only one side has. Both sides are asked concurrently."""
    bits = min(bits_per_level, HASH_BITS)
    agg_r, agg_p = await asyncio.gather(redis_side.aggregate(0, None, bits),
                                        postgres_side.aggregate(0, None, bits))
    result = SetDiff(redis_count=sum(n for n, _ in agg_r.values()),
                     postgres_count=sum(n for n, _ in agg_p.values()), levels=1)
    diff = _differing(agg_r, agg_p)
    while diff:
        size = sum(max(agg_r.get(k, (0, 0))[0], agg_p.get(k, (0, 0))[0]) for k in diff)
        share = len(diff) / max(len(agg_r.keys() | agg_p.keys()), 1)
        if size <= leaf_members or share > LEAF_SHARE or bits + bits_per_level > HASH_BITS:
            break
        child = bits + bits_per_level
        agg_r, agg_p = await asyncio.gather(redis_side.aggregate(bits, diff, child),
                                            postgres_side.aggregate(bits, diff, child))
        diff, bits = _differing(agg_r, agg_p), child
        result.levels += 1
    if not diff:
        return result
    in_redis, in_pg = await asyncio.gather(redis_side.members(bits, diff), postgres_side.members(bits, diff))
    result.only_redis = in_redis - in_pg
    result.only_postgres = in_pg - in_redis
    result.buckets_fetched = len(diff)
    return result


# -- reading Redis sets and hashes in bulk ----------------------------------------------

SMALL_SET = 2_000
PIPELINE = 256


async def set_members(redis: Redis, keys: Sequence[tuple[str, str]], *,
                      sscan_count: int = 5_000) -> AsyncIterator[list[str]]:
    """Members of many Redis sets, each prefixed with its tag: ``(key, tag)`` pairs
    yield ``tag + member``. Small sets come pipelined (SMEMBERS), large ones by SSCAN,
    so no single command holds Redis for long."""
    for start in range(0, len(keys), PIPELINE):
        chunk = keys[start:start + PIPELINE]
        async with redis.pipeline(transaction=False) as pipe:
            for key, _ in chunk:
                pipe.scard(key)
            sizes = await pipe.execute()
        small = [(k, t) for (k, t), n in zip(chunk, sizes, strict=True) if 0 < int(n) <= SMALL_SET]
        large = [(k, t) for (k, t), n in zip(chunk, sizes, strict=True) if int(n) > SMALL_SET]
        if small:
            async with redis.pipeline(transaction=False) as pipe:
                for key, _ in small:
                    pipe.smembers(key)
                replies = await pipe.execute()
            yield [tag + text(m) for (_, tag), items in zip(small, replies, strict=True) for m in items]
        for key, tag in large:
            async for items in scan_pages(redis.sscan, key, count=sscan_count):
                if items:
                    yield [tag + text(m) for m in items]


async def hashes(redis: Redis, keys: Sequence[str]) -> AsyncIterator[list[tuple[str, dict[str, str]]]]:
    """``(key, fields)`` of many hashes, pipelined HGETALL (an absent hash: ``{}``)."""
    for start in range(0, len(keys), PIPELINE):
        chunk = keys[start:start + PIPELINE]
        async with redis.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hgetall(key)
            replies = await pipe.execute()
        yield [(key, {text(k): text(v) for k, v in raw.items()}) for key, raw in zip(chunk, replies, strict=True)]
