"""The revocation clock (engine/revocations.py): a read answers with a value read after
it began, one GET serves every waiter of a batch, and a waiter that is cancelled takes
no other waiter with it."""

from __future__ import annotations

import asyncio
from typing import Any

from dropgate.engine.keys import Keys
from dropgate.engine.revocations import RevocationClock


class _Redis:
    """A GET that waits until the test lets it answer the value current at that moment."""

    def __init__(self) -> None:
        self.value = 0
        self.gets = 0
        self.go = asyncio.Event()

    async def get(self, key: str) -> bytes:
        self.gets += 1
        await self.go.wait()
        self.go.clear()
        return str(self.value).encode()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_read_waits_for_a_get_issued_after_it_began_and_waiters_share_one_get() -> None:
    redis = _Redis()
    clock = RevocationClock(redis, Keys("t", 4))  # type: ignore[arg-type]
    early = [asyncio.create_task(clock.read(1)) for _ in range(3)]
    await _settle()
    assert redis.gets == 1  # one GET for the three
    late = [asyncio.create_task(clock.read(1)) for _ in range(3)]  # arrive while it is in flight
    await _settle()
    redis.value = 7  # a revoke lands after the first GET was issued
    redis.go.set()
    await _settle()
    assert [t.result() for t in early] == [7, 7, 7]
    assert not any(t.done() for t in late)  # the in-flight GET may predate them: they wait
    assert redis.gets == 2
    redis.go.set()
    results: list[Any] = await asyncio.gather(*late)
    assert results == [7, 7, 7]
    await clock.close()


async def test_a_cancelled_waiter_leaves_the_others_their_answer() -> None:
    redis = _Redis()
    clock = RevocationClock(redis, Keys("t", 4))  # type: ignore[arg-type]
    redis.value = 3
    waiters = [asyncio.create_task(clock.read(2)) for _ in range(4)]
    await _settle()
    waiters[0].cancel()
    await _settle()
    redis.go.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [3, 3, 3]
    await clock.close()
