"""Where the log's heads stand against the offsets the persister committed.

A script appends its event in the same atomic step as its change, so the last entry id
of a partition's log (its head) read at some instant covers every change acknowledged
before it; ``dg_partition_offsets`` (advanced in the persister's commit) says how far
PostgreSQL holds them. Read-your-writes for lists (``?consistent=true``) and
reconcile's settling and replay all wait for the offsets to reach the heads: the
persister, not a clock. A trimmed or empty log has nothing unacknowledged to wait for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from dropgate.engine.events import parse_stream_id
from dropgate.engine.keys import Keys
from dropgate.errors import PersistenceLagging
from dropgate.ids import text

Offsets = dict[int, tuple[int, int]]


async def log_heads(redis: Redis, keys: Keys, partitions: Iterable[int] | None = None) -> Offsets:
    """The last entry id of each partition's log (every partition by default; absent:
    an empty log)."""
    parts = list(range(keys.partitions) if partitions is None else partitions)
    async with redis.pipeline(transaction=False) as pipe:
        for p in parts:
            pipe.xrevrange(keys.log(p), "+", "-", count=1)
        replies = await pipe.execute()
    return {p: parse_stream_id(text(entries[0][0])) for p, entries in zip(parts, replies, strict=True) if entries}


async def log_lengths(redis: Redis, keys: Keys, partitions: Iterable[int] | None = None) -> dict[int, int]:
    """Unpersisted events per partition (a log keeps only those; every partition by default)."""
    parts = list(range(keys.partitions) if partitions is None else partitions)
    async with redis.pipeline(transaction=False) as pipe:
        for p in parts:
            pipe.xlen(keys.log(p))
        return {p: int(n) for p, n in zip(parts, await pipe.execute(), strict=True)}


async def waiting_versions(redis: Redis, keys: Keys, partition: int) -> dict[str, int]:
    """Entity -> the highest version among its events still in the partition's log (the
    log holds exactly the events the persister has not committed: it trims after each
    commit)."""
    waiting: dict[str, int] = {}
    start = "-"
    while True:
        entries: Any = await redis.xrange(keys.log(partition), min=start, count=10_000)
        for _, fields in entries:
            entity, version = text(fields.get(b"e", b"")), int(fields.get(b"v", b"0"))
            waiting[entity] = max(waiting.get(entity, -1), version)
        if len(entries) < 10_000:
            return waiting
        start = "(" + text(entries[-1][0])  # exclusive: after the last one read


async def committed_offsets(db: Any) -> Offsets:
    """Each partition's committed offset, on a pool or a connection (a snapshot's)."""
    rows = await db.fetch("SELECT partition, last_ms, last_seq FROM dg_partition_offsets")
    return {r["partition"]: (r["last_ms"], r["last_seq"]) for r in rows}


async def wait_committed(redis: Redis, pool: Any, keys: Keys, heads: Offsets, *, timeout_s: float,
                         still_s: float = math.inf) -> Offsets:
    """Wait until the committed offsets reach ``heads`` (or their logs are trimmed), for at
    most ``timeout_s``, or less once the offsets stopped moving for ``still_s``; polling
    with backoff. The heads not reached (empty: all were)."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.005
    last: Offsets | None = None
    still_since = time.monotonic()
    while True:
        offsets = await committed_offsets(pool)
        heads = {p: head for p, head in heads.items() if offsets.get(p, (0, 0)) < head}
        if heads:  # a trimmed log was committed (or lost): nothing of it to wait for
            lengths = await log_lengths(redis, keys, heads)  # only the partitions still waited for
            heads = {p: head for p, head in heads.items() if lengths[p]}
        now = time.monotonic()
        if offsets != last:
            last, still_since = offsets, now
        if not heads or now >= deadline or now - still_since > still_s:
            return heads
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.1)


async def wait_applied(redis: Redis, pool: Any, keys: Keys, partitions: Iterable[int], *,
                       timeout_s: float = 5.0) -> None:
    """Return once PostgreSQL holds every change acknowledged before the call."""
    lagging = await wait_committed(redis, pool, keys, await log_heads(redis, keys, partitions), timeout_s=timeout_s)
    if lagging:
        raise PersistenceLagging(
            f"PostgreSQL did not catch up with the writes acknowledged before this request "
            f"within {timeout_s:g} s; retry, or list without consistent=true.",
            details={"partitions": sorted(lagging)})
