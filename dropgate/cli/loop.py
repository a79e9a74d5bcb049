"""The event loop the ``dropgate`` command runs on (``DROPGATE_EVENT_LOOP``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from dropgate.settings import ConfigError, env_name


def event_loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, int]], int]:
    """``asyncio.run`` on the chosen loop. uvloop (libuv) makes each request's socket
    work and task switches cheaper: measured +25% no-op requests/s and +10% offer
    purchases/s per process (BENCHMARKS.md)."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"{env_name('event_loop')} must be auto, uvloop or asyncio, got {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(f"{env_name('event_loop')}=uvloop but uvloop is not installed "
                                  "(pip install uvloop)") from None
        else:
            return uvloop.run
    return asyncio.run
