"""Is a consumer group making progress on a partition log? Read from Redis alone, so
any API process answers for every persister (``/readyz``).

A lease held says a persister is alive, not that it consumes: one can hold its lease
and still leave the log untouched (an await that never returns, entries delivered
but never acknowledged). The log's age is no measure either: a persister catching up
on a large backlog reads old entries all the time. So a partition is *stalled* when,
for longer than ``after_ms``, either

- an entry delivered to the group has stayed unacknowledged (a batch is applied and
  acknowledged within a second; PostgreSQL down counts: nothing is being persisted), or
- entries wait that were never delivered, and no consumer of the group has read for
  that long (or it has none yet).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dropgate.ids import text


def _ms(stream_id: Any) -> int:
    return int(text(stream_id).split("-")[0])


async def stalled(redis: Redis, stream: str, group: str, *, after_ms: int, now_ms: int) -> bool:
    try:
        groups: list[dict[Any, Any]] = await redis.xinfo_groups(stream)
    except ResponseError:  # no log: nothing waits
        return False
    info = next((g for g in groups if text(g["name"]) == group), None)
    if info is not None and int(info["pending"]):
        late = await redis.xpending_range(stream, group, min="-", max="+", count=1, idle=after_ms)
        if late:
            return True
    last = text(info["last-delivered-id"]) if info is not None else "0-0"
    waiting: Any = await redis.xrange(stream, min=f"({last}", count=1)
    if not waiting or now_ms - _ms(waiting[0][0]) <= after_ms:
        return False
    consumers: list[dict[Any, Any]] = (
        await redis.xinfo_consumers(stream, group) if info is not None else [])
    return not any(int(c["idle"]) <= after_ms for c in consumers)
