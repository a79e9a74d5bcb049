"""Filling partition logs through the real scripts, for ``benchmarks.persister``.

Each domain's hot operation as the API runs it under a crowd, without HTTP: offer
holds coalesced 64 to a script call (``Offers.purchase_batch``), invite redemptions
one script call each, promo redemptions one script call each, code reservations of
one code coalesced per pool (``Codes.reserve``). Every call succeeds (a new user or
customer each time, an unlimited code, a deep pool), so each writes one event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from dropgate.engine.offers import HoldRequest
from dropgate.runtime import Runtime

try:  # the purchase ids of the revision under test, as its API makes them
    from dropgate.engine.offers import new_purchase_id
except ImportError:  # a baseline before ids in time order: random ones, as its API made

    def new_purchase_id() -> str:
        from dropgate.ids import new_id

        return new_id("pu_")

DOMAINS = ("offers", "invites", "promos", "codes")
CONCURRENCY = 64


async def setup(rt: Runtime, domain: str, tenant: str, *, capacity: int) -> None:
    """The tenant and the one hot entity of ``domain`` (``capacity`` units or codes)."""
    await rt.tenants.create(tenant, name=tenant, status="active", trial_end_ms=None)
    if domain == "offers":
        await rt.offers.create(tenant, offer_id="hot", event_id="drop", name="Hot", price_minor=2500,
                               currency="usd", total=10**9, max_per_order=3, expires_at_ms=None,
                               active=True)
    elif domain == "invites":
        await rt.invites.create(tenant, code="HOT", max_uses=0, expires_at_ms=None, active=True)
    elif domain == "promos":
        await rt.promos.create(tenant, code="HOT", kind="percent", value=125_000, currency="usd")
    elif domain == "codes":
        for start in range(0, capacity, 10_000):
            await rt.codes.upload_batch(tenant, "drop", "tm",
                                        [f"C{i:09d}" for i in range(start, min(start + 10_000, capacity))])
    else:
        raise ValueError(f"unknown domain {domain!r}")


def operation(rt: Runtime, domain: str, tenant: str, tag: str) -> Callable[[int], Awaitable[int]]:
    """One hot operation of ``domain`` for request ``i``; returns how many events it wrote."""
    if domain == "offers":
        async def hold(i: int) -> int:
            holds = [HoldRequest(purchase_id=new_purchase_id(), user_id=f"{tag}u{i}x{j}", quantity=1,
                                 idem_digest=f"{tag}{i:016x}{j:04x}", fingerprint=f"fp{i}x{j}")
                     for j in range(64)]
            results = await rt.offers.purchase_batch(
                tenant, "hot", holds, [], hold_ttl_ms=1_800_000, rate_interval_ms=200.0, rate_burst=10,
                idem_ttl_ms=86_400_000, idem_stale_ms=60_000)
            if not all(r.ok for r in results):
                raise RuntimeError(f"a hold was refused: {next(r for r in results if not r.ok)}")
            return len(results)
        return hold
    if domain == "invites":
        async def redeem(i: int) -> int:
            await rt.invites.redeem(tenant, "HOT", user_id=f"{tag}u{i}")
            return 1
        return redeem
    if domain == "promos":
        async def promo(i: int) -> int:
            await rt.promos.redeem_minor(tenant, "HOT", customer_id=f"{tag}c{i}", base_minor=1999,
                                         currency="usd")
            return 1
        return promo
    if domain == "codes":
        async def reserve(i: int) -> int:
            got = await rt.codes.reserve(tenant, "drop", "tm", 1)
            if len(got.codes) != 1:
                raise RuntimeError("the pool ran dry")
            return 1
        return reserve
    raise ValueError(f"unknown domain {domain!r}")


async def fill(rt: Runtime, domain: str, tenant: str, events: int, *, tag: str = "f") -> tuple[int, float]:
    """Write about ``events`` events of ``domain`` as fast as the scripts take them;
    returns how many operations succeeded (holds, uses, reservations) and their rate (/s)."""
    one = operation(rt, domain, tenant, tag)
    calls = events // 64 if domain == "offers" else events
    counter = iter(range(calls))
    written = 0

    async def worker() -> None:
        nonlocal written
        for i in counter:
            n = await one(i)  # not `written += await ...`: that reads `written` before awaiting
            written += n

    workers = 4 if domain == "offers" else CONCURRENCY
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return written, written / (time.perf_counter() - started)
