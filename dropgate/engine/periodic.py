"""The loop of the sweepers (expired offer holds, abandoned uploads): a pass every
``interval_s`` until closed; and ``pause``, the wait of every such loop (the persister's
and the webhook dispatcher's too) that closing cuts short.

A sweeper cleans up after work that stopped mid-way, so it must outlive any outage: a
pass that fails (Redis or PostgreSQL away) is logged and simply tried again at the
next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def every(interval_s: float, closed: asyncio.Event, one_pass: Callable[[], Awaitable[object]],
                *, log: logging.Logger, what: str) -> None:
    """``one_pass`` now, then ``interval_s`` after each pass ends, until ``closed`` is set
    (which also cuts the wait short); a failure is logged (``what`` names the sweeper) to
    ``log``, the caller's logger."""
    while not closed.is_set():
        try:
            await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # try again next round
            log.warning("%s pass failed: %r", what, exc)
        await pause(closed, interval_s)


async def pause(closed: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or until ``closed`` is set if that comes first: a loop being
    stopped never waits out its interval."""
    try:
        await asyncio.wait_for(closed.wait(), timeout=seconds)
    except TimeoutError:
        pass
