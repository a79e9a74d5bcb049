"""Coalesce concurrent requests for one hot entity into one script call.

A ``Batcher`` keeps one queue per entity key. The first request for an idle key
starts a drain task; requests arriving while a batch is in flight wait in the
queue and leave together in the next batch (up to ``max_batch``), so under a crowd
one offer costs one Redis round trip per batch, not per request, while a lone
request still goes out at once (no timer, no added latency). The drain task ends
when its queue is empty, so idle keys hold nothing.

``flush(key, items)`` must return one result per item, in order: a value or an
exception instance (delivered to that item's caller alone). If ``flush`` itself
raises, every item of that batch gets the exception. Per-item semantics are the
flush function's business (the offer script still checks, holds and logs each
request on its own); the batcher only decides who travels together.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Req = TypeVar("Req")
Res = TypeVar("Res")

Flush = Callable[[K, list[Req]], Awaitable[Sequence[Res | BaseException]]]


class QueueFull(Exception):
    """The key's queue is at its bound: the caller sheds the request."""


class Batcher(Generic[K, Req, Res]):
    def __init__(self, flush: Flush[K, Req, Res], *, max_batch: int = 64,
                 max_queue: int = 10_000) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1")
        self._flush = flush
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queues: dict[K, collections.deque[tuple[Req, asyncio.Future[Res]]]] = {}
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self.batches = 0
        self.items = 0

    async def submit(self, key: K, item: Req) -> Res:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = collections.deque()
        if len(queue) >= self._max_queue:
            raise QueueFull(f"{len(queue)} requests queued for {key!r}")
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        queue.append((item, future))
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._drain(key, queue),
                                                   name=f"batcher-{key!r}")
        return await future

    async def _drain(self, key: K, queue: collections.deque[tuple[Req, asyncio.Future[Res]]]) -> None:
        try:
            while queue:
                n = min(len(queue), self._max_batch)
                batch = [queue.popleft() for _ in range(n)]
                self.batches += 1
                self.items += n
                try:
                    results = await self._flush(key, [item for item, _ in batch])
                    if len(results) != n:
                        raise RuntimeError(f"flush returned {len(results)} results for {n} items")
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled: cancel this batch and the rest
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._tasks.pop(key, None)
            if not queue:
                self._queues.pop(key, None)
            else:  # cancelled with waiters left: cancel them rather than leave them hanging
                while queue:
                    _, future = queue.popleft()
                    future.cancel()

    async def close(self) -> None:
        """Cancel every drain task (their waiters get CancelledError)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
