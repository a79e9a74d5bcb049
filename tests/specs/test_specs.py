"""The entity specs agree with the migrated schema and the scripts; the one guarded swap."""

from __future__ import annotations

import re

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import load_sources
from dropgate.runtime import Runtime
from dropgate.specs import DOMAINS, Entity

SQL_TYPES = {"text": "text", "integer": "integer", "bigint": "bigint", "boolean": "boolean",
             "timestamptz": "timestamp with time zone", "jsonb": "jsonb"}


def _entities() -> list[Entity]:
    return [e for d in DOMAINS for e in d.entities]


async def test_every_spec_column_exists_with_its_type(runtime: Runtime) -> None:
    rows = await runtime.pool.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema()")
    columns = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    views = {r["table_name"] for r in await runtime.pool.fetch(
        "SELECT table_name FROM information_schema.views WHERE table_schema = current_schema()")}
    for e in _entities():
        for f in (*e.ids, *e.fields):
            if f.sql is None and f.same_as is None:
                assert columns.get((e.table, f.col)) == SQL_TYPES[f.sql_type], (e.kind, f.name)
        for m in e.members:
            for col in (*m.link, m.id, *(f.col for f in m.fields)):
                assert (m.table, col) in columns, (e.kind, m.name, col)
        for c in e.counts:
            assert (e.table, c.col) in columns, (e.kind, c.field)
            assert c.table in views or all((c.table, col) in columns for col in c.link), (e.kind, c.field)


def test_every_spec_names_real_scripts_and_keys() -> None:
    sources = load_sources()
    for e in _entities():
        assert e.restore in sources, e.kind
        if e.resync:
            assert e.resync[0] in sources, e.kind
        assert re.fullmatch(r"[a-z_]+", e.kind)
        assert len({f.name for f in e.fields}) == len(e.fields), e.kind
    assert "restore_swap" in sources
    assert not [n for n in sources if n.startswith("restore_") and n not in
                {"restore_swap", "restore_hash", "restore_members", "restore_balance", "restore_codes"}]
    assert all(n.startswith("resync_") for n in sources if "resync" in n)


async def test_the_guarded_swap_replaces_merges_and_respects_the_version(runtime: Runtime) -> None:
    tk = runtime.keys.tenant("swap")
    hash_, coll, shared = tk.invite("X"), tk.invite_users("X"), tk.purchases()
    staged, staged_shared = Keys.staging(coll), Keys.staging(tk.invite("X"), "restore:shared")
    await runtime.redis.sadd(coll, "old")
    await runtime.redis.hset(shared, "keep", "1")
    await runtime.scripts.call("restore_members", [staged], ["1", "set", "a", "b"])
    await runtime.scripts.call("restore_members", [staged_shared], ["1", "hash", "new", "2"])
    unused = [staged, staged]
    answer = await runtime.scripts.call("restore_swap", [hash_, coll, staged, shared, staged_shared, *unused, *unused,
                                                         *unused], ["*", "rm---", "", "version", 3])
    assert answer == {"restored": True}
    assert sorted(await runtime.redis.smembers(coll)) == [b"a", b"b"]
    assert await runtime.redis.hgetall(shared) == {b"keep": b"1", b"new": b"2"}
    assert not await runtime.redis.exists(staged, staged_shared)
    await runtime.scripts.call("restore_members", [staged], ["1", "set", "c"])
    refused = await runtime.scripts.call("restore_swap", [hash_, coll, staged, *unused, *unused, *unused, *unused],
                                         ["2", "r----", "", "version", 4])
    assert refused == {"restored": False, "version": 3}
    assert sorted(await runtime.redis.smembers(coll)) == [b"a", b"b"] and not await runtime.redis.exists(staged)
