"""The partition's hold expiry queue names each offer once, at its earliest hold (#19).

A crowd's call of 64 holds added 64 members to the queue, one per hold, all at the same
expiry: the sweeper only ever used them to find the offers to sweep. Now the purchase
script queues the offer (``ZADD LT``: an earlier entry stays), the sweeper releases the
offer's due holds from its own holds and queues it again at the first hold left, and a
restore queues each offer at its earliest pending hold. Entries of single holds, as an
earlier release queued them, are still swept and dropped.
"""

from __future__ import annotations

import asyncio

from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.persistence.test_restore import _wipe

T = "t1"
_OFFERS = ("a", "b", "c")
_CROWD = 300  # holds, each its own caller, over the three offers
_SHORT_MS, _LONG_MS = 400, 3_600_000


async def _offers(runtime: Runtime) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    for o in _OFFERS:
        await runtime.offers.create(T, offer_id=o, event_id="e", name=o, price_minor=100, currency="usd",
                                    total=10**6, max_per_order=3, expires_at_ms=None, active=True)


async def _hold(runtime: Runtime, offer: str, user: str, ttl_ms: int) -> str:
    pid = new_purchase_id()
    [held] = await runtime.offers.purchase_batch(
        T, offer, [HoldRequest(purchase_id=pid, user_id=user, quantity=1)], [], hold_ttl_ms=ttl_ms,
        rate_interval_ms=0.001, rate_burst=10**6, idem_ttl_ms=86_400_000, idem_stale_ms=60_000)
    assert held.ok, held
    return pid


async def _queue(runtime: Runtime) -> dict[str, float]:
    entries = await runtime.redis.zrange(runtime.keys.tenant(T).offer_hold_expiry(), 0, -1, withscores=True)
    return {member.decode(): score for member, score in entries}


async def _earliest(runtime: Runtime) -> dict[str, float]:
    """Each offer with holds: its earliest hold's expiry (what its queue entry must be)."""
    out = {}
    for o in _OFFERS:
        first = await runtime.redis.zrange(runtime.keys.tenant(T).offer_holds(o), 0, 0, withscores=True)
        if first:
            out[f"{T}:{o}"] = first[0][1]
    return out


async def test_a_crowd_queues_each_offer_once_and_the_sweeper_releases_every_due_hold(
        runtime: Runtime, persister: Persister) -> None:
    await _offers(runtime)
    # every third caller holds for long, the others briefly; all at once
    plan = [(_OFFERS[i % 3], f"u{i}", _LONG_MS if i % 3 == 0 else _SHORT_MS) for i in range(_CROWD)]
    pids = await asyncio.gather(*(_hold(runtime, o, u, ttl) for o, u, ttl in plan))
    short = {pid for pid, (_, _, ttl) in zip(pids, plan, strict=True) if ttl == _SHORT_MS}
    queued = await _queue(runtime)
    assert queued == await _earliest(runtime) and len(queued) == 3

    await asyncio.sleep(_SHORT_MS / 1000 + 0.1)
    assert await runtime.hold_sweeper.run_once() == len(short) == 200
    assert await runtime.hold_sweeper.run_once() == 0
    # "a" keeps its long holds, queued again at the first of them; "b" and "c" have none left
    assert await _queue(runtime) == await _earliest(runtime) and list(await _queue(runtime)) == [f"{T}:a"]
    for o in _OFFERS:
        state = await runtime.offers.read(T, o)
        assert state.reserved == (100 if o == "a" else 0)
    statuses = {pid: (await runtime.offers.purchase(T, pid)).status for pid in pids}
    assert statuses == {pid: "expired" if pid in short else "pending" for pid in pids}

    await persister.drain()
    rows = await runtime.pool.fetch("SELECT purchase_id, status FROM offer_purchases WHERE tenant_id = $1", T)
    assert {r["purchase_id"]: r["status"] for r in rows} == statuses
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0

    # restored from PostgreSQL: each offer with pending holds queued at the earliest of them
    assert await _wipe(runtime) > 0
    await restore(runtime)
    assert await _queue(runtime) == await _earliest(runtime) and list(await _queue(runtime)) == [f"{T}:a"]
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_an_earlier_release_queued_single_holds_and_they_are_still_swept(runtime: Runtime) -> None:
    await _offers(runtime)
    due = await _hold(runtime, "a", "u1", _SHORT_MS)
    settled = await _hold(runtime, "b", "u2", _SHORT_MS)
    tk = runtime.keys.tenant(T)
    queue = tk.offer_hold_expiry()
    # as an earlier release queued them: one entry per hold, none per offer
    for o, pid in (("a", due), ("b", settled)):
        expiry = await runtime.redis.zscore(tk.offer_holds(o), pid)
        await runtime.redis.zrem(queue, f"{T}:{o}")
        await runtime.redis.zadd(queue, {f"{T}:{o}:{pid}": expiry})
    assert (await runtime.offers.release(T, "b", settled, status="canceled")).outcome == "released"
    assert await _queue(runtime) == {f"{T}:a:{due}": await runtime.redis.zscore(tk.offer_holds("a"), due)}
    await asyncio.sleep(_SHORT_MS / 1000 + 0.1)
    assert await runtime.hold_sweeper.run_once() == 1
    assert await _queue(runtime) == {}
    assert (await runtime.offers.purchase(T, due)).status == "expired"
    assert (await runtime.offers.read(T, "a")).reserved == 0


async def test_a_later_hold_never_moves_the_offers_entry_later(runtime: Runtime) -> None:
    """``ZADD LT``: a call holding for longer keeps the offer queued at its earlier hold;
    a shorter one brings it forward. Holds released lazily leave the entry early, and the
    sweeper's visit then finds nothing due and queues the offer at its first hold left."""
    await _offers(runtime)
    await _hold(runtime, "a", "u1", 60_000)
    first = (await _queue(runtime))[f"{T}:a"]
    await _hold(runtime, "a", "u2", _LONG_MS)
    assert (await _queue(runtime))[f"{T}:a"] == first
    brief = await _hold(runtime, "a", "u3", _SHORT_MS)
    early = (await _queue(runtime))[f"{T}:a"]
    assert early < first and early == await runtime.redis.zscore(runtime.keys.tenant(T).offer_holds("a"), brief)
    await asyncio.sleep(_SHORT_MS / 1000 + 0.1)
    assert (await runtime.offers.read(T, "a")).reserved == 2  # released lazily by the read
    assert (await _queue(runtime))[f"{T}:a"] == early  # the entry stays early ...
    assert await runtime.hold_sweeper.run_once() == 0  # ... until the sweeper's visit
    assert await _queue(runtime) == {f"{T}:a": first}
