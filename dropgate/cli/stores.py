"""Are the configured stores there? The check a command makes before it opens them.

A configured Redis or PostgreSQL (``DROPGATE_REDIS_URL`` / ``DROPGATE_DATABASE_URL``)
is asked the cheapest question it answers: ``PING``, ``SELECT 1``, on a connection of
its own. ``serve`` and ``persister`` ask again with bounded exponential backoff, for up
to ``DROPGATE_STARTUP_WAIT_S`` (a server started with its stores, by compose or an
orchestrator, must not lose the race), logging each failed attempt; the other commands
ask once. A store that does not answer becomes ``StoreUnavailable``, whose ``str`` is
the one line the command prints: ``Redis at redis://127.0.0.1:1/0
(DROPGATE_REDIS_URL): connection refused``. Embedded stores are not checked here: the
command starts them itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("dropgate.startup")

_FIRST_DELAY_S = 0.1
_MAX_DELAY_S = 5.0
_ATTEMPT_TIMEOUT_S = 5.0  # one attempt's connect + answer, at most
_MIN_ATTEMPT_TIMEOUT_S = 0.5  # ... and at least, even at the end of the wait


class StoreUnavailable(Exception):
    """A configured store did not answer (in time)."""

    def __init__(self, store: str, url: str, source: str, reason: str) -> None:
        super().__init__(store, url, source, reason)
        self.store, self.url, self.source, self.reason = store, url, source, reason

    def __str__(self) -> str:
        return f"{self.store} at {redact(self.url)} ({self.source}): {self.reason}"


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


async def ping_redis(url: str, timeout_s: float) -> None:
    from dropgate.engine.redisclient import connect

    client = connect(url, max_connections=2, timeout_s=timeout_s, pool_wait_s=timeout_s)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def ping_postgres(dsn: str, timeout_s: float) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=timeout_s)
    try:
        await conn.fetchval("SELECT 1", timeout=timeout_s)
    finally:
        await conn.close(timeout=timeout_s)


def reason(exc: BaseException, timeout_s: float) -> str:
    """What went wrong, in a few words (redis-py wraps the socket error in its own)."""
    from redis.exceptions import AuthenticationError, ConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    if isinstance(exc, ConnectionError) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | RedisTimeout):
        return f"no answer within {timeout_s:g}s"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, FileNotFoundError):
        return "no such socket"
    if isinstance(exc, AuthenticationError):
        return f"authentication failed ({exc})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def wait_for(store: str, url: str, source: str, check: Callable[[str, float], Awaitable[None]], *,
                   deadline: float) -> None:
    """Ask ``check`` until it answers or ``deadline`` (``time.monotonic()``) has passed,
    doubling the pause between attempts up to ``_MAX_DELAY_S``."""
    started, delay, attempt = time.monotonic(), _FIRST_DELAY_S, 0
    while True:
        attempt += 1
        # Asked once (no wait): the whole of one attempt's time, not the floor kept for
        # the end of a wait. A busy machine's PostgreSQL can take over 0.5 s to fork a
        # backend, and a one-shot command (reconcile, restore) then gave up on it.
        timeout_s = (min(_ATTEMPT_TIMEOUT_S, max(deadline - time.monotonic(), _MIN_ATTEMPT_TIMEOUT_S))
                     if deadline > started else _ATTEMPT_TIMEOUT_S)
        try:
            await asyncio.wait_for(check(url, timeout_s), timeout_s + 1)
        except Exception as exc:  # every failure is the store not answering, in its own words
            failure = StoreUnavailable(store, url, source, reason(exc, timeout_s))
        else:
            if attempt > 1:
                log.info("%s at %s answered (attempt %d, after %.1fs)", store, redact(url), attempt,
                         time.monotonic() - started)
            return
        pause = min(delay, deadline - time.monotonic())
        if deadline > started:  # waiting at all: say so at every attempt
            log.warning("%s (attempt %d; %s)", failure, attempt,
                        f"retrying in {pause:.1f}s" if pause > 0 else "giving up")
        if pause <= 0:
            raise failure
        await asyncio.sleep(pause)
        delay = min(delay * 2, _MAX_DELAY_S)


async def wait_for_stores(redis_url: str | None, database_url: str | None, *, wait_s: float,
                          sources: tuple[str, str] = ("DROPGATE_REDIS_URL", "DROPGATE_DATABASE_URL")) -> None:
    """Until both configured stores answer; ``wait_s`` bounds the whole wait (0: ask once).
    ``sources`` name where each URL came from, for the message."""
    deadline = time.monotonic() + wait_s
    if redis_url:
        await wait_for("Redis", redis_url, sources[0], ping_redis, deadline=deadline)
    if database_url:
        await wait_for("PostgreSQL", database_url, sources[1], ping_postgres, deadline=deadline)
