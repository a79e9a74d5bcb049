"""Deleting an installation's keys: for tests, benchmarks and tearing an install down.

Only keys under ``<prefix>:`` are touched, in batches, so a shared Redis keeps
everything else. Not for serving: hot state changes only inside scripts.
"""

from __future__ import annotations

from redis.asyncio import Redis

from dropgate.engine.redisclient import delete_keys, scan_keys


async def delete_prefix(redis: Redis, prefix: str, *, batch: int = 1000) -> int:
    """Delete every key matching ``<prefix>:*``; return how many were deleted."""
    deleted = 0
    keys: list[bytes] = []
    async for key in scan_keys(redis, f"{prefix}:*", count=batch):  # every master of a cluster
        keys.append(key)
        if len(keys) >= batch:
            deleted += await delete_keys(redis, keys)
            keys.clear()
    deleted += await delete_keys(redis, keys)
    return deleted
