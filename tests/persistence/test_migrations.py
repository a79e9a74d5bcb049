"""Migrations apply once, in order, even when two processes start together."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

from dropgate.persistence import database
from dropgate.persistence.database import create_pool
from dropgate.persistence.migrate import lock_id, migrate, migrate_database, migration_files
from dropgate.settings import Settings


async def test_concurrent_migrate_applies_each_once(settings: Settings, isolated: str) -> None:
    assert settings.database_url is not None
    pools = [await create_pool(settings, settings.database_url, max_size=1) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
        applied = [name for names in results for name in names]
        assert sorted(applied) == sorted(path.name for _, path in migration_files())
        rows = await pools[0].fetch("SELECT version FROM dg_schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [v for v, _ in migration_files()]
        assert await migrate(pools[0]) == []
    finally:
        for p in pools:
            await p.close()


def _slow_migrations(directory: Path) -> Path:
    """One migration that takes 1.5 s, then leaves a table to show it ran to its end."""
    (directory / "0001_slow.sql").write_text("SELECT pg_sleep(1.5);\nCREATE TABLE slow_done (x integer);\n")
    return directory


async def _has_table(settings: Settings, isolated: str, name: str) -> bool:
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        found = await conn.fetchval("SELECT to_regclass($1)", f'"{isolated}".{name}')
        return found is not None
    finally:
        await conn.close()


async def test_a_start_migrates_past_the_pools_timeout(settings: Settings, isolated: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that outlasts the pool's client timeout (a key rebuilt over a large
    table: benchmarks.migration_times) still applies at start: on the pool it would be
    cancelled and rolled back, at this start and every one after."""
    assert settings.database_url is not None
    slow = _slow_migrations(tmp_path)
    monkeypatch.setattr(database, "POOL_COMMAND_TIMEOUT_S", 0.5)
    pool = await create_pool(settings, settings.database_url, max_size=1)
    try:
        with pytest.raises(TimeoutError):
            await migrate(pool, directory=slow)
    finally:
        await pool.close()
    assert not await _has_table(settings, isolated, "slow_done")

    assert await migrate_database(settings, settings.database_url, directory=slow) == ["0001_slow.sql"]
    assert await _has_table(settings, isolated, "slow_done")
    assert await migrate_database(settings, settings.database_url, directory=slow) == []


async def test_a_start_waits_for_another_migrating_and_says_so(
        settings: Settings, isolated: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two starts at once: the second waits for the first's migrations, however long
    they take, and logs why it waits; each migration applies once."""
    assert settings.database_url is not None
    slow = _slow_migrations(tmp_path)
    holder = await asyncpg.connect(settings.database_url)
    try:  # the first start's lock, held here while the second starts
        await holder.execute("SELECT pg_advisory_lock($1)", lock_id(isolated))
        with caplog.at_level(logging.INFO, logger="dropgate.persistence.migrate"):
            second = asyncio.create_task(migrate_database(settings, settings.database_url, directory=slow))
            await asyncio.sleep(1.0)
            assert not second.done()
            assert any(f"another process is migrating schema {isolated}" in r.getMessage() for r in caplog.records)
            await holder.execute("SELECT pg_advisory_unlock($1)", lock_id(isolated))
            assert await asyncio.wait_for(second, 30) == ["0001_slow.sql"]
    finally:
        await holder.close()


async def test_invite_counter_trigger_follows_hand_written_sql(runtime: object) -> None:
    from dropgate.runtime import Runtime

    assert isinstance(runtime, Runtime)
    pool = runtime.pool
    await pool.execute("""INSERT INTO invite_codes (tenant_id, code, max_uses, active, created_at, version)
                          VALUES ('t', 'c', 0, true, now(), 1)""")
    await pool.executemany("INSERT INTO invite_code_uses VALUES ('t', 'c', $1, now())",
                           [(f"u{i}",) for i in range(5)])
    assert await pool.fetchval("SELECT used_count FROM invite_codes") == 5
    await pool.execute("DELETE FROM invite_code_uses WHERE user_id IN ('u1', 'u2')")
    assert await pool.fetchval("SELECT used_count FROM invite_codes") == 3
