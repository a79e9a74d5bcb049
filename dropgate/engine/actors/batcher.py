"""Coalesce concurrent requests for one hot entity into one script call.

A ``Batcher`` keeps one queue per entity key. A request for a key with fewer than
``max_in_flight`` batches under way starts a drain task; requests arriving while
those are in flight wait in the queue and leave together in the next batch (up to
``max_batch``), so under a crowd one offer costs one Redis round trip per batch,
not per request, while a lone request still goes out at once (no timer, no added
latency). A few batches in flight per key keep Redis and Python busy at the same
time (each script is atomic on its own; their order does not matter). Drain tasks
end when their queue is empty, so idle keys hold nothing.

A batch may also be bounded by a budget: with ``weight`` and ``max_weight``, items
leave together only while their summed weight stays within ``max_weight`` (the first
item always leaves, whatever its weight), e.g. code reservations whose counts one
script call serves together.

``flush(key, items)`` must return one result per item, in order: a value or an
exception instance (delivered to that item's caller alone). If ``flush`` itself
raises, every item of that batch gets the exception. Per-item semantics are the
flush function's business (the offer script still checks, holds and logs each
request on its own); the batcher only decides who travels together.

A caller that enqueues *parks*: it steps no more until its batch answers. The
``PARKED`` context variable, when set (by the HTTP layer, for the request being
served), is called then, so that per-tenant admission (``http/admission.py``) counts
the requests being worked on, not those parked here: a tenant's crowd then fills
whole batches instead of a quarter of one each.

``post`` queues work nobody waits for (it rides with the key's next batch, and
starts a drain only when none is under way): a caller that awaited it would pay a
second task wake-up for a result it does not need. Its failures are logged;
``close`` gives queued posts a grace period first.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from dropgate.errors import TenantBusy

K = TypeVar("K", bound=Hashable)
Req = TypeVar("Req")
Res = TypeVar("Res")

log = logging.getLogger("dropgate.batcher")

Flush = Callable[[K, list[Req]], Awaitable[Sequence[Res | BaseException]]]

# Called (at most once matters: it must be idempotent) when the current request parks
# on a batch; see the module's docstring.
PARKED: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "dropgate_batcher_parked", default=None)


class QueueFull(TenantBusy):
    """The key's queue is at its bound: the request is shed before anything of it ran, so
    it answers 503 ``TENANT_BUSY`` with ``Retry-After``, which a client may retry as is
    (``UNAVAILABLE`` would say a write may have been applied)."""


class Batcher(Generic[K, Req, Res]):
    """Per-key queues drained in batches: the one coalescing mechanism of the engine."""

    def __init__(self, flush: Flush[K, Req, Res], *, max_batch: int = 64,
                 max_queue: int = 10_000, max_in_flight: int = 1,
                 weight: Callable[[Req], int] | None = None, max_weight: int | None = None,
                 name: str = "", queued: str = "requests for the same key") -> None:
        if max_batch < 1 or max_queue < 1 or max_in_flight < 1:
            raise ValueError("max_batch, max_queue and max_in_flight must be >= 1")
        if (weight is None) != (max_weight is None):
            raise ValueError("weight and max_weight go together")
        self._flush = flush
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._max_in_flight = max_in_flight
        self._weight = weight
        self._max_weight = max_weight
        # (item, its waiter or None for a post, first)
        self._queues: dict[K, collections.deque[tuple[Req, asyncio.Future[Res] | None, bool]]] = {}
        self._tasks: dict[K, set[asyncio.Task[None]]] = {}
        # what the queue has sent so far: items / batches is how well a crowd coalesced
        # (``/metrics``: dropgate_batches_total, dropgate_batched_items_total, by ``name``)
        self.name = name
        self._queued = queued  # what a full queue holds, for its refusal: "purchases of this offer"
        self.batches = 0
        self.items = 0

    def enqueue(self, key: K, item: Req, *, first: bool = False) -> asyncio.Future[Res]:
        """Queue ``item``; the future gets its result. ``first``: at the head of the queue
        and never refused (for work that completes an earlier item, e.g. storing the
        response of a request whose hold was taken: refusing it would strand that
        request). Raises ``QueueFull`` when the key's queue is at its bound."""
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._put(key, item, future, first)
        parked = PARKED.get()
        if parked is not None:
            parked()
        return future

    def post(self, key: K, item: Req) -> None:
        """Queue ``item`` at the head (as ``first``) with nobody waiting for its result:
        it leaves with the key's next batch; a failure is logged, not raised."""
        self._put(key, item, None, True)

    def _put(self, key: K, item: Req, future: asyncio.Future[Res] | None, first: bool) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = collections.deque()
        if first:
            queue.appendleft((item, future, True))
        elif len(queue) >= self._max_queue:
            raise QueueFull(f"Too many {self._queued} are queued; retry shortly.",
                            details={"queue": self.name, "queued": len(queue), "retry_after_s": 1})
        else:
            queue.append((item, future, False))
        tasks = self._tasks.get(key)
        if tasks is None:
            tasks = self._tasks[key] = set()
        # A post rides with the next batch of a drain already under way (it loops while
        # its queue is not empty); starting one for it would send a batch of posts alone
        # ahead of the requests about to arrive (a purchase's stored response went out in
        # a script call of its own, halving the batches under a crowd: BENCHMARKS.md).
        if len(tasks) < self._max_in_flight and (future is not None or not tasks):
            tasks.add(asyncio.create_task(self._drain(key, queue), name="batcher"))

    async def _drain(self, key: K,
                     queue: collections.deque[tuple[Req, asyncio.Future[Res] | None, bool]]) -> None:
        try:
            while queue:
                batch = self._take(queue)
                n = len(batch)
                self.batches += 1
                self.items += n
                try:
                    results = await self._flush(key, [entry[0] for entry in batch])
                    if len(results) != n:
                        raise RuntimeError(f"flush returned {len(results)} results for {n} items")
                except Exception as exc:
                    for _, future, _ in batch:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    _lost(key, sum(e[1] is None for e in batch), exc)
                    continue
                except BaseException:  # cancelled: cancel this batch and the rest
                    for _, future, _ in batch:
                        if future is not None:
                            future.cancel()
                    _lost(key, sum(e[1] is None for e in batch), "cancelled")
                    raise
                for (_, future, _), result in zip(batch, results, strict=True):
                    if future is None:
                        if isinstance(result, BaseException):
                            _lost(key, 1, result)
                    elif future.done():
                        continue
                    elif isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            tasks = self._tasks.get(key)
            if tasks is not None:
                current = asyncio.current_task()
                tasks.discard(current)  # type: ignore[arg-type,unused-ignore]
                if not tasks:
                    del self._tasks[key]
            if not queue:
                if key not in self._tasks:
                    self._queues.pop(key, None)
            elif key not in self._tasks:  # cancelled, waiters left: cancel them, never leave them hanging
                posts = 0
                while queue:
                    _, future, _ = queue.popleft()
                    if future is None:
                        posts += 1
                    else:
                        future.cancel()
                _lost(key, posts, "cancelled")

    def _take(self, queue: collections.deque[tuple[Req, asyncio.Future[Res] | None, bool]]
              ) -> list[tuple[Req, asyncio.Future[Res] | None, bool]]:
        """The next batch: every ``first`` item queued (they are at the head), then up to
        ``max_batch`` others within the weight budget (at least one item)."""
        batch: list[tuple[Req, asyncio.Future[Res] | None, bool]] = []
        others = 0
        spent = 0
        while queue:
            item, _, first = queue[0]
            if not first:
                if others >= self._max_batch:
                    break
                if self._weight is not None and self._max_weight is not None:
                    cost = self._weight(item)
                    if batch and spent + cost > self._max_weight:
                        break
                    spent += cost
                others += 1
            batch.append(queue.popleft())
        return batch

    async def close(self, grace_s: float = 5.0) -> None:
        """Let queued work finish for up to ``grace_s`` (posts have nobody to retry them),
        then cancel every drain task (their waiters get CancelledError)."""
        tasks = [t for group in self._tasks.values() for t in group]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        tasks = [t for group in self._tasks.values() for t in group]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _lost(key: object, posts: int, why: object) -> None:
    if posts:
        log.warning("%d posted item(s) for %r not applied: %s", posts, key, why)
