"""Applies ``migrations/NNNN_name.sql`` in order, each in its own transaction.

Applied versions are recorded in ``dg_schema_migrations``; a session-level advisory
lock keyed by the schema serialises two processes starting at once, so neither
sees a half-applied migration. A start migrates on a connection of its own, without
the pool's client timeout (``migrate_database``).
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from dropgate.persistence.database import connect_for_batch_work
from dropgate.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
log = logging.getLogger(__name__)


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise ValueError(f"migration {path.name} is not named NNNN_name.sql")
        files.append((int(match.group(1)), path))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a number")
    return files


def lock_id(schema: str) -> int:
    """The advisory lock serialising the migrations of ``schema`` (one per schema: two
    installations sharing a database do not wait for each other)."""
    return zlib.crc32(f"dropgate-migrate:{schema}".encode())


async def migrate(db: asyncpg.Pool | asyncpg.Connection, *, through: int | None = None,
                  directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing (up to version ``through``, when given: a schema as an earlier
    release left it, for the tests of a later migration); return the names applied now.
    On a pool, its statements keep the pool's client timeout: a start migrates with
    ``migrate_database``."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _migrate(conn, through, directory)
    return await _migrate(db, through, directory)


async def migrate_database(settings: Settings, dsn: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """What every start does: apply what is missing on a connection without a client
    timeout (``connect_for_batch_work``), so a long migration runs to its end."""
    conn = await connect_for_batch_work(settings, dsn)
    try:
        return await migrate(conn, directory=directory)
    finally:
        await conn.close()


async def _migrate(conn: asyncpg.Connection | PoolConnectionProxy, through: int | None,
                   directory: Path) -> list[str]:
    applied_now: list[str] = []
    schema = await conn.fetchval("SELECT current_schema()")
    lock = lock_id(schema)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):
        log.info("another process is migrating schema %s; waiting for it to finish", schema)
        await conn.execute("SELECT pg_advisory_lock($1)", lock)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS dg_schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM dg_schema_migrations")}
        for version, path in migration_files(directory):
            if version in done or (through is not None and version > through):
                continue
            log.info("applying migration %s", path.name)  # a large table's may take a while
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO dg_schema_migrations (version, name) VALUES ($1, $2)",
                    version, path.name,
                )
            log.info("applied migration %s", path.name)
            applied_now.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied_now
