"""A schema migrated up to a given migration, with rows an earlier release wrote, for the
tests of the later ones."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from dropgate.persistence.database import create_pool
from dropgate.persistence.migrate import migrate, migration_files
from dropgate.settings import Settings


@contextlib.asynccontextmanager
async def schema_at(settings: Settings, last: int) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection on the test's own schema (the ``isolated`` fixture's),
    migrated up to ``last``, holding tenant ``t1``'s offer ``o1`` (what a purchase row
    needs); the test writes its rows as that release did, then calls ``migrate_rest``."""
    assert settings.database_url is not None
    pool = await create_pool(settings, settings.database_url, max_size=1)
    try:
        assert await migrate(pool, through=last) == [path.name for version, path in migration_files()
                                                      if version <= last]
        async with pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency, inventory_total,
                                       reserved, sold, max_per_order, active, archived, created_at, version)
                   VALUES ('t1', 'o1', 'e1', 'n', 100, 'usd', 1000, 0, 0, 5, true, false, now(), 1)""")
        yield pool
    finally:
        await pool.close()


async def migrate_rest(pool: asyncpg.Pool, last: int) -> None:
    """The migrations after ``last``, applied by ``migrate`` as a deployment runs them."""
    assert await migrate(pool) == [path.name for version, path in migration_files() if version > last]
