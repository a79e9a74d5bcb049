"""Idempotency records go at their expiry, filed many to a member of the expiry zset (#19).

A buffered script (a purchase call of 64 keyed requests) filed each request's record in
the partition's expiry zset as a member of its own: 64 members added per call, all at one
expiry. Now the call files one member naming its records ('\\n'-separated, lib/dg_idem.lua),
and ``offer_housekeep`` drops each record a due member names once the record's own expiry
has passed: a key filed again since keeps its new record. Members an earlier release wrote
(one field each) are read the same way.
"""

from __future__ import annotations

import asyncio
import time

from dropgate.engine.offers import HoldRequest
from dropgate.runtime import Runtime

T = "t1"
_CALLS, _PER_CALL = 15, 20  # 300 keyed purchases, each call its own caller
_TTL_MS = 400


async def _offer(runtime: Runtime) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.offers.create(T, offer_id="o", event_id="e", name="O", price_minor=100, currency="usd",
                                total=10**6, max_per_order=3, expires_at_ms=None, active=True)


async def _call(runtime: Runtime, keys: list[str], tag: str) -> list[int]:
    requests = [HoldRequest(purchase_id=f"pu_{tag}{i}", user_id=f"u_{key}", quantity=1, idem_digest=key,
                            fingerprint=f"f_{key}") for i, key in enumerate(keys)]
    answers = await runtime.offers.purchase_batch(
        T, "o", requests, [], hold_ttl_ms=3_600_000, rate_interval_ms=0.001, rate_burst=10**6,
        idem_ttl_ms=_TTL_MS, idem_stale_ms=60_000)
    return [a.ok for a in answers]


async def test_a_call_files_its_records_as_one_member_and_housekeeping_drops_them_all(runtime: Runtime) -> None:
    await _offer(runtime)
    tk = runtime.keys.tenant(T)
    idem, expiry = tk.offer_idempotency(), tk.offer_idempotency_expiry()
    calls = [[f"k{c}x{i}" for i in range(_PER_CALL)] for c in range(_CALLS)]
    answers = await asyncio.gather(*(_call(runtime, keys, f"c{c}x") for c, keys in enumerate(calls)))
    assert answers == [[1] * _PER_CALL] * _CALLS
    members = [m.decode() for m in await runtime.redis.zrange(expiry, 0, -1)]
    assert sorted(sorted(m.split("\n")) for m in members) == sorted(
        sorted(f"{T}:{k}" for k in keys) for keys in calls)
    assert await runtime.redis.hlen(idem) == _CALLS * _PER_CALL

    # nothing is due yet; then, past the expiry, bounded steps drop every record
    assert (await runtime.offers.housekeep(tk.partition, limit=50))["idempotency"] == 0
    await asyncio.sleep(_TTL_MS / 1000 + 0.1)
    steps = []
    while await runtime.redis.zcard(expiry):
        steps.append((await runtime.offers.housekeep(tk.partition, limit=50))["idempotency"])
    assert steps == [60] * 5  # members are taken whole: three of 20 records reach 50
    assert await runtime.redis.hlen(idem) == 0
    # the key's record gone, a repeat is new work again: a second hold
    assert await _call(runtime, calls[0][:1], "again") == [1]
    assert (await runtime.offers.read(T, "o")).reserved == _CALLS * _PER_CALL + 1


async def test_a_record_filed_again_outlives_its_first_member(runtime: Runtime) -> None:
    """A due member names a record that was filed again since (its own expiry later):
    the member goes, the record stays until its new member is due. A member of one field,
    as an earlier release filed them, is read alike."""
    await _offer(runtime)
    tk = runtime.keys.tenant(T)
    idem, expiry = tk.offer_idempotency(), tk.offer_idempotency_expiry()
    assert await _call(runtime, ["a", "b"], "first") == [1, 1]
    now_ms = int(time.time() * 1000)
    later = now_ms + 60_000
    await runtime.redis.hset(idem, f"{T}:a", f"D {now_ms} {later} f_a 0 {{}}")  # "a" filed again
    await runtime.redis.zadd(expiry, {f"{T}:a": later})
    await runtime.redis.hset(idem, f"{T}:old", f"D {now_ms - 10} {now_ms - 5} f_old 0 {{}}")
    await runtime.redis.zadd(expiry, {f"{T}:old": now_ms - 5})  # an earlier release's member
    await asyncio.sleep(_TTL_MS / 1000 + 0.1)
    assert (await runtime.offers.housekeep(tk.partition, limit=1000))["idempotency"] == 2  # "b", "old"
    assert sorted(k.decode() for k in await runtime.redis.hkeys(idem)) == [f"{T}:a"]
    assert [m.decode() for m in await runtime.redis.zrange(expiry, 0, -1)] == [f"{T}:a"]
