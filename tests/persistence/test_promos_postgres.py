"""Promo codes in PostgreSQL: triggers keep the counters, the persister never writes them."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from dropgate.cli import promos as promos_cli
from dropgate.engine.events import Event, PromoRedeemed, parse_entry
from dropgate.persistence.appliers import APPLIERS
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def counters(conn: asyncpg.Connection | asyncpg.Pool, code: str) -> tuple[int, int]:
    row = await conn.fetchrow("SELECT times_used, total_bonus_issued FROM promo_codes"
                              " WHERE tenant_id = 't' AND code = $1", code)
    return row["times_used"], row["total_bonus_issued"]


async def new_code(pool: asyncpg.Pool, code: str, max_uses: int | None = None) -> None:
    # a hand-written insert that even tries to set the counters: they start at zero
    await pool.execute(
        """INSERT INTO promo_codes (tenant_id, code, bonus_kind, bonus_amount, currency, max_uses,
                                    active, times_used, total_bonus_issued, created_at, version)
           VALUES ('t', $1, 'fixed', 500, 'usd', $2, true, 42, 4242, $3, 1)""",
        code, max_uses, NOW)


async def test_triggers_follow_hand_written_sql(runtime: Runtime) -> None:
    pool = runtime.pool
    await new_code(pool, "A")
    await new_code(pool, "B")
    assert await counters(pool, "A") == (0, 0)
    await pool.execute("""INSERT INTO promo_code_uses VALUES
        ('t', 'A', 'u1', 'c1', 1000, 100, now()), ('t', 'A', 'u2', 'c2', 1000, 250, now()),
        ('t', 'B', 'u3', 'c1', 1000, 7, now())""")
    assert await counters(pool, "A") == (2, 350)
    assert await counters(pool, "B") == (1, 7)
    await pool.execute("INSERT INTO promo_code_uses VALUES ('t', 'A', 'u4', 'c3', 5, 1, now())")
    assert await counters(pool, "A") == (3, 351)
    await pool.execute("DELETE FROM promo_code_uses WHERE use_id = 'u2'")
    assert await counters(pool, "A") == (2, 101)
    await pool.execute("UPDATE promo_code_uses SET bonus_amount = 40 WHERE use_id = 'u1'")
    assert await counters(pool, "A") == (2, 41)
    await pool.execute("UPDATE promo_code_uses SET code = 'B' WHERE use_id = 'u4'")  # move a use
    assert (await counters(pool, "A"), await counters(pool, "B")) == ((1, 40), (2, 8))
    await pool.execute("UPDATE promo_code_uses SET customer_id = 'x'")  # counters unaffected
    assert (await counters(pool, "A"), await counters(pool, "B")) == ((1, 40), (2, 8))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM promo_code_uses WHERE code = 'B'")
        await conn.execute("INSERT INTO promo_code_uses VALUES ('t', 'B', 'u9', 'c', 9, 9, now())")
    assert await counters(pool, "B") == (1, 9)
    await pool.execute("TRUNCATE promo_code_uses")
    assert (await counters(pool, "A"), await counters(pool, "B")) == ((0, 0), (0, 0))


async def test_counters_refuse_direct_writes_and_limits_hold(runtime: Runtime) -> None:
    pool = runtime.pool
    await new_code(pool, "C", max_uses=2)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE promo_codes SET times_used = 5 WHERE code = 'C'")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE promo_codes SET total_bonus_issued = 1 WHERE code = 'C'")
    await pool.execute("UPDATE promo_codes SET active = false WHERE code = 'C'")  # other columns: fine
    await pool.execute("""INSERT INTO promo_code_uses VALUES
        ('t', 'C', 'u1', 'c1', 10, 1, now()), ('t', 'C', 'u2', 'c2', 10, 1, now())""")
    with pytest.raises(asyncpg.CheckViolationError):  # a third use is past max_uses
        await pool.execute("INSERT INTO promo_code_uses VALUES ('t', 'C', 'u3', 'c3', 10, 1, now())")
    assert await counters(pool, "C") == (2, 2)
    await pool.execute("DELETE FROM promo_codes WHERE code = 'C'")  # cascades to its uses
    assert await pool.fetchval("SELECT count(*) FROM promo_code_uses WHERE code = 'C'") == 0


async def test_sync_repairs_drift(runtime: Runtime) -> None:
    """The migration's sync: recompute counters from rows (here after forced drift)."""
    pool = runtime.pool
    await new_code(pool, "D")
    await new_code(pool, "E")
    await pool.execute("""INSERT INTO promo_code_uses VALUES
        ('t', 'D', 'u1', 'c1', 10, 3, now()), ('t', 'D', 'u2', 'c2', 10, 4, now())""")
    async with pool.acquire() as conn, conn.transaction():
        # the only way to make drift: the sync's own switch (as an old system would have had)
        await conn.execute("SELECT set_config('dropgate.promo_counter_sync', 'on', true)")
        await conn.execute("UPDATE promo_codes SET times_used = 9, total_bonus_issued = 99"
                           " WHERE code IN ('D', 'E')")
    assert await counters(pool, "D") == (9, 99)
    assert await pool.fetchval("SELECT promo_codes_sync_counters()") == 2
    assert (await counters(pool, "D"), await counters(pool, "E")) == ((2, 7), (0, 0))
    assert await pool.fetchval("SELECT promo_codes_sync_counters()") == 0
    with pytest.raises(asyncpg.CheckViolationError):  # the switch does not outlive the sync
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT promo_codes_sync_counters()")
            await conn.execute("UPDATE promo_codes SET times_used = 1 WHERE code = 'E'")
    migration = await pool.fetchval(
        "SELECT name FROM dg_schema_migrations WHERE version = 4")
    assert migration == "0004_promos.sql"


async def test_persister_replay_changes_nothing(runtime: Runtime, persister: Persister) -> None:
    """Rows follow Redis; re-applying the log (even past a rollback) leaves them as they are."""
    promos = runtime.promos
    await promos.create("acme", code="R", kind="percent", value=100_000, currency="usd",
                        per_customer_limit=5)
    uses = [await promos.redeem_minor("acme", "R", customer_id=f"c{i % 3}", base_minor=1000 + i,
                                      currency="usd") for i in range(6)]
    await promos.rollback("acme", "R", uses[0].use_id)
    await promos.rollback("acme", "R", uses[3].use_id)
    await promos.update("acme", "R", active=False, max_uses=10)
    tk = runtime.keys.tenant("acme")
    events = [parse_entry(tk.partition, eid, f) for eid, f in await runtime.redis.xrange(tk.log)]
    assert [e.type for e in events if e.entity == "promo:acme:R"].count("promo.redeemed") == 6
    await persister.drain()

    async def snapshot() -> tuple[object, ...]:
        code = await runtime.pool.fetchrow("SELECT * FROM promo_codes WHERE code = 'R'")
        rows = await runtime.pool.fetch("SELECT * FROM promo_code_uses WHERE code = 'R' ORDER BY use_id")
        return tuple(code.items()), tuple(tuple(r.items()) for r in rows)

    before = await snapshot()
    state = await promos.get("acme", "R")
    assert dict(before[0])["times_used"] == state.times_used == 4
    assert dict(before[0])["total_bonus_issued"] == state.total_bonus_issued
    assert dict(before[0])["version"] == state.version and dict(before[0])["active"] is False
    assert {dict(r)["use_id"] for r in before[1]} == {u.use_id for u in uses} - {
        uses[0].use_id, uses[3].use_id}
    async with runtime.pool.acquire() as conn, conn.transaction():
        for e in events:  # every event once more, in order, one at a time
            await APPLIERS[e.type](conn, [e])
        redeemed = [e for e in events if e.type == "promo.redeemed"]
        await APPLIERS["promo.redeemed"](conn, redeemed)  # and as one batch
    assert await snapshot() == before


async def test_stats_command_shows_both_sides(runtime: Runtime, persister: Persister,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    promos = runtime.promos
    await promos.create("acme", code="S", kind="fixed", value=250, currency="usd",
                        per_customer_limit=3)
    for i in range(4):
        await promos.redeem_minor("acme", "S", customer_id=f"c{i}", base_minor=999, currency="usd")
    report = await promos_cli.stats(runtime, "acme", "S")
    assert report["redis"]["times_used"] == 4 and report["postgresql"] is None
    assert report["pending_events"] == 5 and report["drift"] == []
    await persister.drain()
    report = await promos_cli.stats(runtime, "acme", "S")
    assert report["redis"] == report["postgresql"]
    assert report["redis"]["total_bonus_issued"] == 1000 and report["pending_events"] == 0
    assert await promos_cli.run_stats(runtime, "acme", "S") == 0
    table = capsys.readouterr().out
    assert "total_bonus_issued" in table and "10.00" in table and "in sync" in table
    # a use row removed behind the persister's back is drift (the triggers keep PG coherent)
    await runtime.pool.execute("DELETE FROM promo_code_uses WHERE use_id IN"
                               " (SELECT use_id FROM promo_code_uses WHERE code = 'S' LIMIT 1)")
    assert await promos_cli.run_stats(runtime, "acme", "S", as_json=True) == 1
    assert '"drift":["redis and postgresql differ' in capsys.readouterr().out
    assert await promos_cli.run_stats(runtime, "acme", "NOPE") == 2


async def test_use_of_an_unknown_code_is_refused_not_dropped(runtime: Runtime) -> None:
    event = Event(id="1-1", partition=0, type="promo.redeemed", entity="promo:t:GHOST", version=2,
                  data=PromoRedeemed(tenant_id="t", code="GHOST", use_id="u1", customer_id="c1",
                                     currency="usd", base_amount=100, bonus_amount=5, at_ms=0))
    async with runtime.pool.acquire() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="promo_code_uses_tenant_id_code_fkey"):
            async with conn.transaction():
                await APPLIERS["promo.redeemed"](conn, [event])
