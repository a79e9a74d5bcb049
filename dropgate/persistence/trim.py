"""Trimming a partition log only past what every consumer group is done with.

Two groups read each log: ``persister`` (write-behind) and ``dispatcher`` (outbound
webhooks). A group is done with an entry when it has read it (``last-delivered-id``)
and acknowledged it (it is not in the group's pending list). ``trim_log`` trims to
the smallest such point over every group, and never past ``upto`` (the caller's own
committed position); until the persister's group exists, it trims nothing. Groups
only move forward, so reading their state and trimming in two steps can only trim
less than allowed, never more.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dropgate.ids import text

REQUIRED_GROUPS = ("persister",)
"""Groups that must have read an entry before it goes, even before they first ran (the
dispatcher's group counts once it exists: a deployment without webhooks never makes it)."""


def _after(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0) + 1


def _at(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def group_floors(redis: Redis, stream: str) -> dict[str, tuple[int, int]]:
    """Per group, the first position it still needs (every entry before it is done)."""
    groups: list[dict[Any, Any]] = await redis.xinfo_groups(stream)
    floors: dict[str, tuple[int, int]] = {}
    for info in groups:
        name = text(info["name"])
        floor = _after(text(info["last-delivered-id"]))
        if int(info["pending"]):
            summary = await redis.xpending(stream, name)
            if summary["min"] is not None:
                floor = min(floor, _at(text(summary["min"])))
        floors[name] = floor
    return floors


async def trim_log(redis: Redis, stream: str, *, upto: tuple[int, int] | None = None) -> None:
    """Trim ``stream`` below the slowest group's floor (and below ``upto``); nothing
    while the persister's group does not exist yet (it has read nothing: every entry
    is still to be applied)."""
    try:
        by_group = await group_floors(redis, stream)
    except ResponseError as exc:  # the stream is gone (Redis flushed or restored): nothing to trim
        if "no such key" in str(exc).lower():
            return
        raise
    if any(group not in by_group for group in REQUIRED_GROUPS):
        return
    floors = list(by_group.values())
    if upto is not None:
        floors.append(upto)
    if not floors:
        return
    ms, seq = min(floors)
    await redis.xtrim(stream, minid=f"{ms}-{seq}", approximate=False)
