"""The checksum set diff: same hash in Python and PostgreSQL, exact differences, few passes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dropgate.engine.keys import Keys
from dropgate.engine.keyspace import KeyIndex
from dropgate.persistence.setdiff import SQL_HASH, SqlSide, StreamSide, diff_sets, member_hash, set_members
from dropgate.runtime import Runtime


async def test_python_and_postgres_hash_members_alike(runtime: Runtime) -> None:
    members = ["", "a", "t1\x1fLAUNCH\x1fuser-17", "Ünïcode ✓", "x" * 300]
    for m in members:
        assert await runtime.pool.fetchval(f"SELECT {SQL_HASH.format('$1::text')}", m) == member_hash(m)


def _producer(members: list[str]) -> StreamSide:
    async def produce() -> AsyncIterator[list[str]]:
        for i in range(0, len(members), 5000):
            yield members[i:i + 5000]
    return StreamSide(produce)


async def _table(runtime: Runtime, n: int) -> SqlSide:
    await runtime.pool.execute("CREATE TABLE set_diff_test (m text PRIMARY KEY)")
    await runtime.pool.execute("INSERT INTO set_diff_test SELECT 'm' || g FROM generate_series(0, $1 - 1) g", n)
    return SqlSide(runtime.pool.fetch, member_sql="m", from_sql="FROM set_diff_test")


async def test_a_large_set_differing_in_three_members_is_bisected_to_them(runtime: Runtime) -> None:
    n = 200_000
    pg = await _table(runtime, n)
    members = [f"m{i}" for i in range(n)]
    members.remove("m4711")                      # only in PostgreSQL
    members += ["extra-1", "extra-2"]            # only in Redis
    diff = await diff_sets(_producer(members), pg)
    assert diff.only_postgres == {"m4711"}
    assert diff.only_redis == {"extra-1", "extra-2"}
    assert diff.redis_count == n + 1 and diff.postgres_count == n
    assert diff.buckets_fetched <= 3             # three buckets' members fetched, not 200,000 rows
    assert pg.queries == 2


async def test_equal_sets_cost_one_pass_and_finer_levels_narrow_down(runtime: Runtime) -> None:
    pg = await _table(runtime, 50_000)
    members = [f"m{i}" for i in range(50_000)]
    same = await diff_sets(_producer(members), pg)
    assert same.equal and same.levels == 1 and pg.queries == 1
    members[123] = "changed"
    side = _producer(members)
    narrowed = await diff_sets(side, pg, bits_per_level=4, leaf_members=100)  # 16 buckets, then 256, ...
    assert narrowed.only_redis == {"changed"} and narrowed.only_postgres == {"m123"}
    assert narrowed.levels >= 2 and narrowed.buckets_fetched <= 2
    assert side.passes == 1  # a small set is kept after its first pass


async def test_empty_side_reports_every_member(runtime: Runtime) -> None:
    pg = await _table(runtime, 1000)
    diff = await diff_sets(_producer([]), pg)
    assert len(diff.only_postgres) == 1000 and not diff.only_redis


def test_key_index_parses_what_keys_py_formats() -> None:
    keys = Keys("dg", 16)
    tk = keys.tenant("acme")
    index = KeyIndex(prefix="dg")
    for key in (tk.tenant(), tk.invite("LAUNCH"), tk.invite_users("LAUNCH"), keys.api_key("k1")[1],
                keys.log(3), keys.meta(), tk.ratelimit("redeem", "u1")):
        index.add(key)
    assert {parts for _, parts in index.find("tenant", None)} == {("tenant", "acme")}
    assert [(p, parts) for p, parts in index.find("t", None, "invite", None)] == [
        (tk.partition, ("t", "acme", "invite", "LAUNCH"))]
    assert index.key(tk.partition, ("t", "acme", "invite", "LAUNCH", "users")) == tk.invite_users("LAUNCH")
    assert index.other == [keys.meta()]
    assert {parts[0] for _, parts in index.domain_parts()} == {"tenant", "t", "apikey"}




async def test_set_members_come_tagged_from_small_and_large_sets(runtime: Runtime) -> None:
    base = runtime.keys.tenant("t1").base
    small, large = f"{base}:s:small", f"{base}:s:large"
    await runtime.redis.sadd(small, "u1", "u2")
    await runtime.redis.sadd(large, *(f"m{i}" for i in range(3000)))  # past SMALL_SET: read by SSCAN
    got: list[str] = []
    async for batch in set_members(runtime.redis, [(small, "S|"), (large, "L|"), (f"{base}:s:none", "N|")]):
        got += batch
    assert sorted(m for m in got if m.startswith("S|")) == ["S|u1", "S|u2"]
    assert {m for m in got if m.startswith("L|")} == {f"L|m{i}" for i in range(3000)}
    assert not any(m.startswith("N|") for m in got)
