"""The asyncpg pool, opened with the configured schema as search_path."""

from __future__ import annotations

import asyncpg

from dropgate.settings import Settings


async def create_pool(settings: Settings, dsn: str, *, max_size: int | None = None) -> asyncpg.Pool:
    server_settings = {"application_name": "dropgate"}
    if settings.database_schema:
        server_settings["search_path"] = settings.database_schema
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size or settings.database_pool_size,
        server_settings=server_settings,
        command_timeout=60,
    )
    return pool


AUTOVACUUM_OFF = (
    "PostgreSQL runs with autovacuum = off: dropgate's tables are then never analyzed, so "
    "PostgreSQL plans their lookups on size guesses and keeps those plans for a connection's "
    "life (BENCHMARKS.md, \"The persister's own rate, and the plan that stalled it\"); "
    "set autovacuum = on in postgresql.conf")


async def autovacuum_off(pool: asyncpg.Pool) -> bool:
    """Whether the server runs without autovacuum. Why it matters: a foreign key check
    planned on a small, never-analyzed table read a tenant's whole index per row and
    stalled the persister (migration 0017 removed that one; 0019 and 0021 replaced the
    other keys of the tables a crowd writes by statement triggers). Other plans made on
    small tables are kept as they grow the same way."""
    return bool(await pool.fetchval("SHOW autovacuum") == "off")
