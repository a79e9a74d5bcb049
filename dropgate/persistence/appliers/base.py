"""The applier signature and the conversions appliers share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dropgate.engine.events import Event
from dropgate.specs import Entity

Applier = Callable[[asyncpg.Connection, list[Event[Any]]], Awaitable[None]]
"""Applies a run of consecutive events of one type; each event's ``data`` is the
payload struct of that type (the persister decoded it, and dead-letters what does not
decode), so an applier reads attributes, never ``d["..."]``."""


def ts(ms: int | None) -> datetime | None:
    """Event payload milliseconds -> timestamptz value."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def saved_upsert(entity: Entity) -> Applier:
    """The applier of ``<kind>.saved`` for ``entity``: its saved fields upserted into its
    table by version (columns and conversions from the spec, so none is restated here)."""
    fields = entity.saved()
    cols = [*(f.col for f in fields), "version"]
    keys = set(entity.id_columns)
    sql = (f"INSERT INTO {entity.table} ({', '.join(cols)}) "
           f"VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) "
           f"ON CONFLICT ({', '.join(entity.id_columns)}) DO UPDATE SET "
           + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)
           + f" WHERE {entity.table}.version < EXCLUDED.version")
    convert = [ts if f.redis == "ms" else None for f in fields]
    names = [f.name for f in fields]

    async def apply(conn: asyncpg.Connection, events: list[Event[Any]]) -> None:
        await conn.executemany(sql, [
            (*(c(getattr(e.data, n)) if c else getattr(e.data, n) for n, c in zip(names, convert, strict=True)),
             e.version)
            for e in events])

    apply.__name__ = apply.__qualname__ = f"{entity.kind}_saved"
    return apply
