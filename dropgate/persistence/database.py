"""The asyncpg pool, opened with the configured schema as search_path, and the connections
of the work whose statements grow with the tables (migrations, reconcile's rounds)."""

from __future__ import annotations

import asyncpg

from dropgate.settings import Settings

POOL_COMMAND_TIMEOUT_S = 60.0
"""How long the pool's statements may run before asyncpg gives up on them (a request's
query, a persister's batch): a statement stuck past it is a fault to report."""


def _server_settings(settings: Settings) -> dict[str, str]:
    server_settings = {"application_name": "dropgate"}
    if settings.database_schema:
        server_settings["search_path"] = settings.database_schema
    return server_settings


async def create_pool(settings: Settings, dsn: str, *, max_size: int | None = None) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size or settings.database_pool_size,
        server_settings=_server_settings(settings),
        command_timeout=POOL_COMMAND_TIMEOUT_S,
    )
    return pool


async def connect_for_batch_work(settings: Settings, dsn: str) -> asyncpg.Connection:
    """A connection of its own, without the pool's client timeout, for statements whose
    time grows with the tables: a migration that re-indexes or rewrites one
    (``benchmarks.migration_times``: about a second per million purchases), a reconcile
    round's aggregates (every code row hashed in one statement: 2.5 s per million codes).
    Past the pool's timeout such a statement would be cancelled, and given up at every
    try after, however large the installation grows. PostgreSQL's own
    ``statement_timeout``, when the operator sets one, still applies."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn, server_settings=_server_settings(settings))
    return conn


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
