"""Ids, times and Redis replies: the small conversions every layer needs, written once.

Part of the ground floor (with ``errors`` and ``money``): it imports nothing of
dropgate but ``errors``, so the engine, the models, the HTTP layer, persistence and
the client may all use it without pulling each other in.

- **Ids.** Every id that reaches a Redis key is 1-64 characters of ``[A-Za-z0-9_.-]``
  (``check_id``), so ``:``, ``{`` and ``}`` can never forge another entity's key or
  hash tag; code types are lowercase words (``check_type``). The API models declare
  the same patterns, so a body is refused by the decoder before it reaches the engine.
- **New ids.** ``random_hex`` draws from a buffer of ``os.urandom`` bytes: one system
  call per ~400 ids (a ``getrandom`` call per id was a visible share of a request's CPU).
  Ids a crowd creates by the thousand and PostgreSQL keys rows by (purchases, promo uses)
  are ``new_ordered_id``: the time first, so new rows land at the right edge of an index.
- **Times.** Inside, a time is integer milliseconds since the epoch (``*_ms``); the API
  shows RFC 3339. Expiry decisions use Redis' clock (``redis_now_ms``) so every
  process agrees.
- **Redis replies.** redis-py types replies as ``bytes | str``; ``text`` makes them str.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dropgate.errors import ValidationError

ID_CHARS = "A-Za-z0-9_.-"  # inside a regex character class
ID_MAX_LENGTH = 64
# (?!\n): Python's $ also matches before a final newline
ID_PATTERN = rf"^[{ID_CHARS}]{{1,{ID_MAX_LENGTH}}}$(?!\n)"
TYPE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$(?!\n)"

_ID_RE = re.compile(ID_PATTERN)
_TYPE_RE = re.compile(TYPE_PATTERN)


def check_id(value: str, field: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise a 400 naming ``field``."""
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise ValidationError(
            f"{field} must be 1-{ID_MAX_LENGTH} characters of A-Z, a-z, 0-9, '_', '.' or '-'.",
            details={"field": field},
        )
    return value


def check_type(value: str, field: str = "type") -> str:
    """Return ``value`` if it is a valid code type, else raise a 400 naming ``field``."""
    if not isinstance(value, str) or _TYPE_RE.fullmatch(value) is None:
        raise ValidationError(f"{field} must match ^[a-z][a-z0-9_-]{{0,31}}$.",
                              details={"field": field})
    return value


# -- new ids ------------------------------------------------------------------------------
_CHUNK = 4096
_buf = b""
_pos = 0


def random_hex(nbytes: int) -> str:
    """``2 * nbytes`` lowercase hex characters of fresh randomness (the kernel's CSPRNG,
    as ``os.urandom(n).hex()``; only the system call is amortized)."""
    global _buf, _pos
    start = _pos
    end = start + nbytes
    if end > len(_buf):
        _buf = os.urandom(max(_CHUNK, nbytes))
        start, end = 0, nbytes
    _pos = end
    return _buf[start:end].hex()


def _forget() -> None:
    global _buf, _pos
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_forget)  # a forked child never shares its parent's bytes


def new_id(prefix: str, nbytes: int = 10) -> str:
    """``prefix`` + ``2 * nbytes`` random hex characters (``new_id("of_")``: 80 bits)."""
    return prefix + random_hex(nbytes)


def new_ordered_id(prefix: str, nbytes: int = 8) -> str:
    """``prefix`` + the wall clock in ms as 12 hex characters + ``2 * nbytes`` random hex
    characters (64 bits by default: as unguessable, and as unlikely to repeat within a
    millisecond, as ever needed).

    Why the time first: a row keyed by a random id lands on a random leaf of every index
    on it, so once a table outgrows the cache each insert reads and dirties pages no
    other insert shares, and writes them whole to the WAL after each checkpoint. Keyed
    by the time, a crowd's rows go to the right edge, as a sequence's would. The
    persister's purchases statement took 48.1 ms per 1,000 holds at 300,000 rows with
    random ids, 33.1 ms with these (BENCHMARKS.md, "Ids in time order"). A clock that
    steps back costs locality, never uniqueness: that is the random part's job."""
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{random_hex(nbytes)}"


# -- times --------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FIRST_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MS  # excluded: PostgreSQL's -infinity by asyncpg
_END_MS = (datetime(5000, 1, 1, tzinfo=UTC) - _EPOCH) // _MS  # excluded: 14 significant digits hold it


def ms_to_dt(ms: int | None) -> datetime | None:
    """Milliseconds since the epoch as an aware UTC datetime (None stays None): exact, in
    integers (a float of seconds rounds to the nearest microsecond)."""
    if ms is None:
        return None
    return _EPOCH + ms * _MS


def dt_to_ms(value: datetime | None, field: str = "time") -> int | None:
    """An aware datetime as milliseconds since the epoch (None stays None), exact (floored).

    RFC 3339 takes "0001-01-01T00:30:00+01:00", whose UTC time is in year 0: a time that
    no answer can render again (``ms_to_dt`` cannot make it). So a time must be one in UTC
    too, or it is a 400 naming ``field``. Two more bounds:
    - its first instant, 0001-01-01T00:00:00Z, is refused: asyncpg sends that datetime to
      PostgreSQL as -infinity, which a list then answered as an offset-less
      "0001-01-01T00:00:00" (make fuzz);
    - so is the year 5000 and after: the scripts' events carry times as JSON numbers, which
      Redis's cjson writes with 14 significant digits, and a time's milliseconds have 15
      from 5138-11-16 (the last millisecond of 9999 came out in year 10000)."""
    if value is None:
        return None
    try:
        ms = (value.astimezone(UTC) - _EPOCH) // _MS
    except (OverflowError, ValueError):
        ms = None
    if ms is None or not _FIRST_MS < ms < _END_MS:
        raise ValidationError(f"{field} must be a time from 0001-01-01T00:00:00.001Z to 4999-12-31T23:59:59.999Z "
                              "once in UTC (times are kept to the millisecond).", details={"field": field})
    return ms


class _HasTime(Protocol):
    """A Redis client (sync replies awaited): anything with ``TIME``."""

    def time(self) -> Awaitable[tuple[int, int]]: ...


async def redis_now_ms(redis: _HasTime) -> int:
    """Redis' clock (``TIME``) in milliseconds: the one clock every process agrees on."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- Redis replies ------------------------------------------------------------------------
def text(value: bytes | str) -> str:
    """A Redis reply as str, whichever way the client decoded it."""
    return value.decode() if isinstance(value, bytes) else value


def text_map(raw: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """A Redis hash reply (``HGETALL``) as a str -> str dict."""
    return {text(k): text(v) for k, v in raw.items()}
