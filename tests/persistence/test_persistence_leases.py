"""``PartitionLeases``: the one balancer of persisters and dispatchers. A member alone
takes every partition, hands the extras over when another joins (ceil(P/live) each),
and takes them back when the other leaves or its leases lapse."""

from __future__ import annotations

import asyncio

from dropgate.persistence.leases import PartitionLeases
from dropgate.runtime import Runtime


def _member(runtime: Runtime, name: str, lease_ms: int = 60_000) -> PartitionLeases:
    return PartitionLeases(scripts=runtime.scripts, partitions=runtime.keys.partitions,
                           lease_key=runtime.keys.dispatcher_lease,
                           members_key=runtime.keys.dispatcher_members(), owner=name,
                           lease_ms=lease_ms, role="dispatcher")


async def test_a_joiner_gets_its_share_and_a_leaver_gives_it_back(runtime: Runtime) -> None:
    assert runtime.keys.partitions == 4
    a, b = _member(runtime, "a"), _member(runtime, "b")
    taken: list[int] = []

    async def take(p: int) -> None:
        taken.append(p)
    gained, lost = await a.refresh(take=take)
    assert gained == {0, 1, 2, 3} and lost == set() and sorted(taken) == [0, 1, 2, 3]
    await b.refresh(force=True)  # registers; a still holds everything
    assert b.owned == set()
    gained, lost = await a.refresh(force=True)  # two live: a keeps 2, gives 2 up
    assert gained == set() and len(lost) == 2 and len(a.owned) == 2
    gained, _ = await b.refresh(force=True)
    assert gained == lost and b.owned == lost and a.owned.isdisjoint(b.owned)
    for p in range(4):
        holder = await runtime.redis.get(runtime.keys.dispatcher_lease(p))
        assert holder == (b"b" if p in b.owned else b"a")
    await b.release()
    gained, _ = await a.refresh(force=True)
    assert gained == lost and a.owned == {0, 1, 2, 3}
    await a.release()
    assert all([await runtime.redis.get(runtime.keys.dispatcher_lease(p)) is None for p in range(4)])


async def test_a_dead_members_partitions_are_taken_once_its_leases_lapse(runtime: Runtime) -> None:
    a, b = _member(runtime, "a", lease_ms=400), _member(runtime, "b", lease_ms=400)
    await a.refresh()
    await b.refresh()
    await a.refresh(force=True)
    await b.refresh(force=True)
    assert len(a.owned) == len(b.owned) == 2
    # b dies: it renews nothing; once its membership and leases lapse, a takes all
    await asyncio.sleep(0.6)
    await a.refresh(force=True)
    assert a.owned == {0, 1, 2, 3}
    await a.release()
