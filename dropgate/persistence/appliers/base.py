"""The applier signature and the conversions appliers share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dropgate.engine.events import Event

Applier = Callable[[asyncpg.Connection, list[Event]], Awaitable[None]]


def ts(ms: Any) -> datetime | None:
    """Event payload milliseconds -> timestamptz value."""
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
