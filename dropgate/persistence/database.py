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
