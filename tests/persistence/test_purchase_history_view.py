"""A purchase's first version is its own row, not a history row (migration 0023, #19).

A purchase is created by its hold and only so: version 1, pending, at its created time.
The persister writes history rows for the later versions alone (``offer_purchase_changes``),
and ``offer_purchase_history`` is a view that shows every version as the table did. So a
crowd of holds writes no history rows, while the history still holds each purchase's
every status, at the times Redis gave them. A schema migrated from 0022, with the rows an
earlier persister wrote, must show exactly the rows it had, and an earlier persister's insert
into the history must fail as something it retries, not as a data error it dead-letters.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import msgspec

from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.persistence import persister as persister_module
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.schemas import migrate_rest, schema_at

TENANT, OFFER = "t1", "hot"
_CROWD = 300  # purchases, each its own caller
_RELEASED = 40  # of them, released: a second version each

History = set[tuple[str, int, str, datetime]]


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def _history(conn: asyncpg.Pool | asyncpg.Connection, table: str) -> History:
    rows = await conn.fetch(f"SELECT purchase_id, version, status, at FROM {table} WHERE tenant_id = $1", TENANT)
    return {(r["purchase_id"], r["version"], r["status"], r["at"]) for r in rows}


async def test_a_crowd_writes_no_history_rows_and_the_history_has_every_version(
        runtime: Runtime, persister: Persister) -> None:
    await runtime.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
    await runtime.offers.create(TENANT, offer_id=OFFER, event_id="drop", name="Hot", price_minor=2500,
                                currency="usd", total=10**6, max_per_order=3, expires_at_ms=None, active=True)

    async def buy(i: int) -> str:
        pid = new_purchase_id()
        [held] = await runtime.offers.purchase_batch(
            TENANT, OFFER, [HoldRequest(purchase_id=pid, user_id=f"u{i}", quantity=1)], [],
            hold_ttl_ms=1_800_000, rate_interval_ms=0.001, rate_burst=10**6, idem_ttl_ms=86_400_000,
            idem_stale_ms=60_000)
        assert held.ok, held
        return pid

    bought = await asyncio.gather(*(buy(i) for i in range(_CROWD)))
    released = bought[:_RELEASED]
    outcomes = await asyncio.gather(*(runtime.offers.release(TENANT, OFFER, pid, status="released")
                                      for pid in released))
    assert {o.outcome for o in outcomes} == {"released"}, outcomes
    await persister.drain()

    # the expected history, from Redis's records: each purchase's first version (pending, at
    # its creation) and, for the released ones, the second at their change
    records = await runtime.redis.hgetall(runtime.keys.tenant(TENANT).purchases())
    assert len(records) == _CROWD
    expected: History = set()
    for raw in records.values():
        p = msgspec.json.decode(raw)
        expected.add((p["purchase_id"], 1, "pending", _at(p["created_ms"])))
        if p["purchase_id"] in released:
            assert p["version"] == 2 and p["status"] == "released", p
            expected.add((p["purchase_id"], 2, "released", _at(p["updated_ms"])))
    assert len(expected) == _CROWD + _RELEASED

    assert await _history(runtime.pool, "offer_purchase_history") == expected
    # written: the second versions alone
    assert await _history(runtime.pool, "offer_purchase_changes") == {h for h in expected if h[1] > 1}


async def test_a_schema_from_0022_keeps_its_history_rows(settings: Settings, isolated: str) -> None:
    async with schema_at(settings, 22) as pool:
        async with pool.acquire() as conn:
            # as the persister of 0022 wrote them: a row per version, the first at the creation
            await conn.execute(
                """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                                amount_minor, currency, hold_expires_at, created_at, updated_at,
                                                version, units)
                   SELECT 't1', 'p' || i, 'o1', 'u' || i, 1, CASE WHEN i % 3 = 0 THEN 'paid' ELSE 'pending' END,
                          100, 'usd', now(), timestamptz '2026-12-01' + i * interval '1 s',
                          timestamptz '2026-12-02' + i * interval '1 s', CASE WHEN i % 3 = 0 THEN 2 ELSE 1 END,
                          CASE WHEN i % 3 = 0 THEN 'sold' ELSE 'held' END
                     FROM generate_series(1, 30) i""")
            await conn.execute(
                """INSERT INTO offer_purchase_history (tenant_id, purchase_id, version, status, at)
                   SELECT tenant_id, purchase_id, 1, 'pending', created_at FROM offer_purchases
                   UNION ALL
                   SELECT tenant_id, purchase_id, 2, 'paid', updated_at FROM offer_purchases WHERE version = 2""")
            before = await _history(conn, "offer_purchase_history")
            assert len(before) == 40

        await migrate_rest(pool, 22)

        async with pool.acquire() as conn:
            assert await _history(conn, "offer_purchase_history") == before
            assert await _history(conn, "offer_purchase_changes") == {h for h in before if h[1] > 1}
            kind = await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE oid = 'offer_purchase_history'::regclass")
            assert kind == "v"  # a view
            # a purchase deleted by hand still takes its history (0017's triggers, on the table now)
            await conn.execute("DELETE FROM offer_purchases WHERE purchase_id = 'p3'")
            assert {h for h in await _history(conn, "offer_purchase_history") if h[0] == "p3"} == set()
            assert await conn.fetchval("SELECT count(*) FROM offer_purchase_changes WHERE purchase_id = 'p3'") == 0
            # an earlier release's persister, still running during a rolling upgrade, writes
            # to the view: refused, and not as a data error, which it would dead-letter; it
            # retries its batch until it is replaced
            try:
                await conn.execute("""INSERT INTO offer_purchase_history (tenant_id, purchase_id, version, status, at)
                                      VALUES ('t1', 'p1', 3, 'refunded', now()) ON CONFLICT DO NOTHING""")
            except asyncpg.PostgresError as exc:
                assert exc.sqlstate == "55000", exc
                assert not isinstance(exc, persister_module._POISON), exc
            else:
                raise AssertionError("the view took an insert")
            await conn.execute("TRUNCATE offer_purchases CASCADE")
            assert await conn.fetchval("SELECT count(*) FROM offer_purchase_history") == 0
            assert await conn.fetchval("SELECT count(*) FROM offer_purchase_changes") == 0
