"""Migrations apply once, in order, even when two processes start together."""

from __future__ import annotations

import asyncio

from dropgate.persistence.database import create_pool
from dropgate.persistence.migrate import migrate, migration_files
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
