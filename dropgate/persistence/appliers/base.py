"""The applier signature and the conversions appliers share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dropgate.engine.events import Event

Applier = Callable[[asyncpg.Connection, list[Event[Any]]], Awaitable[None]]
"""Applies a run of consecutive events of one type; each event's ``data`` is the
payload struct of that type (the persister decoded it, and dead-letters what does not
decode), so an applier reads attributes, never ``d["..."]``."""


def ts(ms: int | None) -> datetime | None:
    """Event payload milliseconds -> timestamptz value."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
