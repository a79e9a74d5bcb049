"""The Batcher's weight budget: items leave together only within ``max_weight``."""

from __future__ import annotations

import asyncio

import pytest

from dropgate.engine.actors.batcher import Batcher


async def test_a_batch_stays_within_its_weight_budget_and_always_takes_one() -> None:
    gate = asyncio.Event()
    seen: list[list[int]] = []

    async def flush(key: str, items: list[int]) -> list[int]:
        seen.append(items)
        await gate.wait()
        return [i * 10 for i in items]

    batcher: Batcher[str, int, int] = Batcher(flush, max_batch=10, weight=lambda n: n, max_weight=10)
    waiters = [batcher.enqueue("k", 1)]
    await asyncio.sleep(0)  # 1 leaves alone and waits in flush
    waiters += [batcher.enqueue("k", n) for n in (4, 5, 2, 30, 3)]
    gate.set()
    assert await asyncio.gather(*waiters) == [10, 40, 50, 20, 300, 30]
    # 4+5 fit and 2 would pass 10; 2+30 would too; 30 is over budget yet leaves (alone)
    assert seen == [[1], [4, 5], [2], [30], [3]]


def test_weight_and_max_weight_go_together() -> None:
    async def flush(key: str, items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError):
        Batcher(flush, weight=lambda n: n)
