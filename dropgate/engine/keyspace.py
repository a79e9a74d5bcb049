"""Deleting an installation's keys: for tests, benchmarks and tearing an install down.

Only keys under ``<prefix>:`` are touched, in batches, so a shared Redis keeps
everything else. Not for serving: hot state changes only inside scripts.
"""

from __future__ import annotations

from redis.asyncio import Redis


async def delete_prefix(redis: Redis, prefix: str, *, batch: int = 1000) -> int:
    """Delete every key matching ``<prefix>:*``; return how many were deleted."""
    deleted = 0
    keys: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += await redis.delete(*keys)
            keys.clear()
    if keys:
        deleted += await redis.delete(*keys)
    return deleted
