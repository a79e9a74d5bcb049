"""Is the webhook dispatcher stuck? Read from the shared stores, so any API process
answers for every dispatcher: an entry its group has not finished, or a due delivery
nobody has taken, older than ``dispatcher_stuck_s``."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dropgate.engine.keys import Keys
from dropgate.ids import text
from dropgate.persistence.trim import group_floors
from dropgate.webhooks.dispatcher import GROUP


async def oldest_unfinished_s(redis: Redis, keys: Keys) -> float:
    """Age of the oldest log entry the dispatcher group still needs (0 when none, or
    when no dispatcher ever ran)."""
    now_ms = time.time() * 1000
    oldest = 0.0
    for p in range(keys.partitions):
        stream = keys.log(p)
        try:
            floor = (await group_floors(redis, stream)).get(GROUP)
        except ResponseError:
            continue
        if floor is None:
            continue
        first: Any = await redis.xrange(stream, min=f"{floor[0]}-{floor[1]}", count=1)
        if first:
            ms = int(text(first[0][0]).split("-")[0])
            oldest = max(oldest, (now_ms - ms) / 1000)
    return oldest


async def overdue_deliveries(pool: asyncpg.Pool, stuck_s: float) -> int:
    return int(await pool.fetchval(
        """SELECT count(*) FROM dg_webhook_deliveries
            WHERE status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1)
              AND (locked_until IS NULL OR locked_until < now())""", stuck_s))


async def dispatcher_stuck(redis: Redis, pool: asyncpg.Pool, keys: Keys, stuck_s: float) -> bool:
    if await oldest_unfinished_s(redis, keys) > stuck_s:
        return True
    return await overdue_deliveries(pool, stuck_s) > 0
