"""Read-your-writes for lists (``?consistent=true``): wait for the persister, not a clock.

At request start, each relevant partition log's last entry id is the watermark:
every change acknowledged before the request is at or below it (a script appends
its event in the same atomic step as the change). The request then waits until
``dg_partition_offsets`` (advanced in the persister's commit) reaches the watermark
for each partition, polling PostgreSQL with a short backoff, for at most
``timeout_s``; past it, 503 ``PERSISTENCE_LAGGING``. A trimmed or empty log has
nothing unacknowledged to wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import asyncpg
from redis.asyncio import Redis

from dropgate.engine.events import parse_stream_id
from dropgate.engine.keys import Keys
from dropgate.errors import PersistenceLagging
from dropgate.ids import text


async def log_heads(redis: Redis, keys: Keys, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """The last entry id of each partition's log (absent: an empty log)."""
    parts = list(partitions)
    async with redis.pipeline(transaction=False) as pipe:
        for p in parts:
            pipe.xrevrange(keys.log(p), "+", "-", count=1)
        replies = await pipe.execute()
    heads: dict[int, tuple[int, int]] = {}
    for p, entries in zip(parts, replies, strict=True):
        if entries:
            heads[p] = parse_stream_id(text(entries[0][0]))
    return heads


async def wait_applied(
    redis: Redis, pool: asyncpg.Pool, keys: Keys, partitions: Iterable[int], *, timeout_s: float = 5.0
) -> None:
    """Return once PostgreSQL holds every change acknowledged before the call."""
    heads = await log_heads(redis, keys, partitions)
    deadline = time.monotonic() + timeout_s
    delay_s = 0.005
    while heads:
        rows = await pool.fetch(
            "SELECT partition, last_ms, last_seq FROM dg_partition_offsets WHERE partition = ANY($1)",
            list(heads))
        done = {r["partition"]: (r["last_ms"], r["last_seq"]) for r in rows}
        heads = {p: head for p, head in heads.items() if done.get(p, (0, 0)) < head}
        if not heads:
            return
        if time.monotonic() >= deadline:
            raise PersistenceLagging(
                f"PostgreSQL did not catch up with the writes acknowledged before this request "
                f"within {timeout_s:g} s; retry, or list without consistent=true.",
                details={"partitions": sorted(heads)})
        await asyncio.sleep(delay_s)  # polling the watermark, with backoff: not a fixed wait
        delay_s = min(delay_s * 2, 0.1)
