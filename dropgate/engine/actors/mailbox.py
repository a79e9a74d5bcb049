"""A bounded FIFO mailbox for one actor: ``offer`` never waits, ``take`` waits for mail.

Bounded on purpose: a full mailbox refuses (the caller answers 503 TENANT_BUSY)
instead of queueing without limit, so a flooded actor costs memory in proportion
to its bound, not to the crowd. Single consumer (the actor's task), many producers,
one event loop: no locks, just a deque and one waiter future.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

M = TypeVar("M")


class Mailbox(Generic[M]):
    __slots__ = ("_items", "_waiter", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a mailbox holds at least one message")
        self.capacity = capacity
        self._items: deque[M] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, message: M) -> bool:
        """Queue ``message``; False when the mailbox is full."""
        if len(self._items) >= self.capacity:
            return False
        self._items.append(message)
        self.wake()
        return True

    def wake(self) -> None:
        """Wake the consumer (new mail, or a stop request it should look at)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_nowait(self) -> M | None:
        return self._items.popleft() if self._items else None

    async def wait(self, timeout_s: float | None) -> bool:
        """Wait until there is mail or ``wake()``; False if ``timeout_s`` passed first."""
        if self._items:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            self._waiter = None

    def drain(self) -> list[M]:
        """Remove and return everything queued."""
        items = list(self._items)
        self._items.clear()
        return items
