"""A resync (``reconcile --repair``'s re-emit) never pushes the log past its backlog bound.

A resync call appends its entity's definition and one event per member it is given;
checked for room for one event, a call of 5,000 members took a log at its bound to
bound + 5,000. Each call now needs room for all it appends (refused with nothing
written otherwise), and the repair sizes its calls to a quarter of the bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import pytest

from dropgate.engine.offers import HoldRequest
from dropgate.errors import PersistenceLagging
from dropgate.persistence.reconcile.base import ReconcileContext
from dropgate.persistence.reconcile.repair import reemit_chunk
from dropgate.runtime import Runtime

MEMBERS = 3

Resync = Callable[[int, list[str]], Awaitable[object]]


async def _invite(rt: Runtime, tenant: str) -> Resync:
    await rt.invites.create(tenant, code="INV", max_uses=10, expires_at_ms=None, active=True)
    users = [f"u{i}" for i in range(MEMBERS)]
    for u in users:
        await rt.invites.redeem(tenant, "INV", user_id=u)
    tk = rt.keys.tenant(tenant)
    return lambda bound, head: rt.scripts.call(
        "resync_invite", [tk.log, tk.invite("INV"), tk.invite_users("INV")], [bound, tenant, "INV", *head, *users])


async def _promo(rt: Runtime, tenant: str) -> Resync:
    await rt.promos.create(tenant, code="PR", kind="fixed", value=100, currency="usd", per_customer_limit=5)
    uses = [(await rt.promos.redeem_minor(tenant, "PR", customer_id=f"c{i}", base_minor=500, currency="usd")).use_id
            for i in range(MEMBERS)]
    tk = rt.keys.tenant(tenant)
    return lambda bound, head: rt.scripts.call(
        "resync_promo", [tk.log, tk.promo("PR"), tk.promo_uses("PR")], [bound, tenant, "PR", *head, *uses])


async def _offer(rt: Runtime, tenant: str) -> Resync:
    await rt.tenants.create(tenant, name=tenant, status="active", trial_end_ms=None)
    await rt.offers.create(tenant, offer_id="of", event_id="ev", name="Tee", price_minor=100, currency="usd",
                           total=10, max_per_order=1, expires_at_ms=None, active=True)
    pids = [f"p{i}" for i in range(MEMBERS)]
    await rt.offers.purchase_batch(
        tenant, "of", [HoldRequest(purchase_id=p, user_id=f"u-{p}", quantity=1) for p in pids], [],
        hold_ttl_ms=60_000, rate_interval_ms=1.0, rate_burst=100, idem_ttl_ms=60_000, idem_stale_ms=60_000)
    tk = rt.keys.tenant(tenant)
    return lambda bound, head: rt.scripts.call(
        "resync_offer", [tk.log, tk.offer("of"), tk.purchases()], [bound, tenant, "of", *head, *pids])


@pytest.mark.parametrize("entity", ["invite", "promo", "offer"])
@pytest.mark.parametrize("definition", [True, False], ids=["with-definition", "members-only"])
async def test_a_resync_needs_room_for_every_event_it_appends(runtime: Runtime, entity: str,
                                                              definition: bool) -> None:
    tenant = f"rb{entity}{int(definition)}"
    resync = await {"invite": _invite, "promo": _promo, "offer": _offer}[entity](runtime, tenant)
    log = runtime.keys.tenant(tenant).log
    before = await runtime.redis.xlen(log)
    need = MEMBERS + (1 if definition else 0)
    head = ["1" if definition else "0"]
    with pytest.raises(PersistenceLagging):
        await resync(before + need - 1, head)  # room for all but one
    assert await runtime.redis.xlen(log) == before  # nothing appended
    await resync(before + need, head)
    assert await runtime.redis.xlen(log) == before + need  # at its bound, never past it


@pytest.mark.parametrize(("bound", "most", "chunk"), [(100_000, 5_000, 5_000), (1_500, 5_000, 375),
                                                       (1_500, 2_000, 375), (3, 5_000, 1)])
async def test_repair_sizes_its_resync_calls_to_a_quarter_of_the_bound(runtime: Runtime, bound: int, most: int,
                                                                         chunk: int) -> None:
    rc = ReconcileContext(redis=runtime.redis, pool=runtime.pool, database_url=runtime.database_url,
                          keys=runtime.keys, scripts=runtime.scripts,
                          settings=msgspec.structs.replace(runtime.settings, max_backlog=bound))
    assert reemit_chunk(rc, most) == chunk
