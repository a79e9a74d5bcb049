"""Claiming a consumer group's pending entries of a partition log (XAUTOCLAIM), shared by
the two groups that read the logs: the persister and the webhook dispatcher (with what
else they share as consumers: their name in the group, and the group's creation).

Both hold every entry a read delivered in memory until they acknowledge it, so between
two of their passes an entry pending in their group is either held or was never seen:
the XREADGROUP ran and its reply was lost with the connection (Redis killed, a socket
timeout under load). ``XREADGROUP >`` never offers it again, and ``trim.py`` never
trims past a pending entry, so left there it would stop trimming for good and the log
would fill to ``max_backlog`` (writes then answer 503). ``ForgottenReads`` claims such
entries back once they have been idle for a lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dropgate.engine.events import Event, parse_entry
from dropgate.engine.keys import Keys
from dropgate.ids import text

log = logging.getLogger(__name__)


def consumer_name() -> str:
    """This process's name in a group (host, pid, a random suffix): unique among the
    group's consumers, and XINFO shows which machine and process reads."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def read_new(redis: Redis, keys: Keys, partitions: Sequence[int], *, group: str, consumer: str,
                   count: int, cluster: bool) -> tuple[Any, BaseException | None]:
    """New entries of the partitions' logs for ``consumer`` of ``group`` (a reply for
    ``by_partition``), and the first failed read of a cluster, for the caller to raise
    once it holds what the others read. One XREADGROUP over all of them on a single
    server (its failure raised here); on a cluster one per partition (each log is its
    own slot, and the client routes it to that slot's master, following MOVED/ASK),
    every read let finish, failed or not: a read that worked has made its entries
    pending under this name, so they are done now rather than left to a claim-back a
    lease later."""
    if not cluster:
        return await redis.xreadgroup(
            group, consumer, {keys.log(p): ">" for p in partitions}, count=count) or [], None
    replies: Any = await asyncio.gather(*(
        redis.xreadgroup(group, consumer, {keys.log(p): ">"}, count=count)
        for p in partitions), return_exceptions=True)
    failure = next((r for r in replies if isinstance(r, BaseException)), None)
    streams = [stream for reply in replies if not isinstance(reply, BaseException)
               for stream in (reply or [])]
    return streams, failure


def by_partition(streams: Any, stream_partition: Mapping[str, int]) -> list[tuple[int, list[Event[Any]]]]:
    """A read's reply as (partition, its events), in reply order; an entry without fields
    (deleted while pending) is skipped, and a partition left with none. ``streams``: an
    XREADGROUP reply as the server sent it (``redisclient.connect``'s clients: ``{stream:
    [[id, [name, value, ...]], ...]}`` in RESP3, ``[[stream, [...]], ...]`` in RESP2) or
    as redis-py parses it (``[[stream, [(id, {name: value}), ...]], ...]``: a client made
    elsewhere, a cluster's)."""
    batches: list[tuple[int, list[Event[Any]]]] = []
    for stream, entries in (streams.items() if isinstance(streams, dict) else streams):
        p = stream_partition[text(stream)]
        events = [parse_entry(p, eid, fields) for eid, fields in entries if fields]
        if events:
            batches.append((p, events))
    return batches


async def create_group(redis: Redis, stream: str, group: str) -> None:
    """``group`` on ``stream`` from its first entry (the stream made when missing); a
    group that exists already (BUSYGROUP: a previous owner made it) is kept as it is."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def claim_pending(redis: Redis, keys: Keys, p: int, *, group: str, consumer: str,
                        min_idle_ms: int, count: int) -> list[Event[Any]]:
    """Take over ``group``'s pending entries of partition ``p`` idle at least
    ``min_idle_ms``, in log order. An id whose entry is gone (trimmed, or the stream
    made anew) has nothing to do: acknowledged, so that it holds no trim back."""
    stream = keys.log(p)
    claimed: list[Event[Any]] = []
    gone: list[Any] = []
    start = "0-0"
    while True:
        reply: Any = await redis.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms,
                                            start_id=start, count=count)
        for eid, fields in reply[1]:
            if eid and fields:
                claimed.append(parse_entry(p, eid, fields))
            elif eid:
                gone.append(eid)
        start = text(reply[0])
        if start == "0-0":
            break
    if gone:
        await redis.xack(stream, group, *gone)
    claimed.sort(key=lambda e: e.position)
    return claimed


class ForgottenReads:
    """Once a lease, the entries delivered to one consumer of a group that it does not
    hold: pending longer than a lease, for an owned partition with nothing held."""

    def __init__(self, *, group: str, consumer: str, lease_ms: int, count: int) -> None:
        self._group = group
        self._consumer = consumer
        self._lease_ms = lease_ms
        self._count = count
        self._next_at = 0.0

    async def claim(self, redis: Redis, keys: Keys, *, owned: Iterable[int],
                    held: Mapping[int, Sequence[Any]]) -> dict[int, list[Event[Any]]]:
        """Per partition, what was claimed back (nothing until a lease since the last
        look). The caller holds it from here on, as if just read."""
        now = time.monotonic()
        if now < self._next_at:
            return {}
        self._next_at = now + self._lease_ms / 1000
        found: dict[int, list[Event[Any]]] = {}
        for p in sorted(owned):
            if held.get(p):
                continue
            claimed = await claim_pending(redis, keys, p, group=self._group, consumer=self._consumer,
                                          min_idle_ms=self._lease_ms, count=self._count)
            if claimed:
                log.warning("%s %s: %d entries of partition %d were delivered but never done or "
                            "acknowledged (a reply lost with its connection); claimed back",
                            self._group, self._consumer, len(claimed), p)
                found[p] = claimed
        return found
