"""Hold expiry (sweeper and lazy), and the sandbox provider's checkout flow end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.offers import create_offer, inventory, pg_offer, purchase, webhook

HOLD_S = 1


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(hold_ttl_s=HOLD_S)  # no Stripe key: the sandbox provider


async def _past_expiry() -> None:
    await asyncio.sleep(HOLD_S + 0.1)


async def test_sweeper_releases_expired_holds(api: Api, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 10)
    await create_offer(api, "o2", 10)
    bodies = [(await purchase(api, o, f"u{i}", 2))[1] for i, o in enumerate(["o1", "o1", "o2"])]
    assert await runtime.hold_sweeper.run_once() == 0  # nothing due yet
    await _past_expiry()
    assert await runtime.hold_sweeper.run_once() == 3
    assert await runtime.hold_sweeper.run_once() == 0
    for b in bodies:
        assert (await api.call("GET", f"/v1/purchases/{b['purchase_id']}"))[1]["status"] == "expired"
    raw = await runtime.redis.hmget(runtime.keys.tenant("acme").offer("o1"), "reserved", "sold")
    assert [int(x) for x in raw] == [0, 0]
    assert await runtime.redis.zcard(runtime.keys.offer_hold_expiry(runtime.keys.tenant("acme").partition)) == 0
    await persister.drain()
    row = await pg_offer(runtime, "acme", "o1")
    assert (row["reserved"], row["rows_reserved"], row["sold"]) == (0, 0, 0)


async def test_expired_holds_are_released_lazily_without_the_sweeper(api: Api) -> None:
    await create_offer(api, "o1", 3)
    assert (await purchase(api, "o1", "u1", 3))[0] == 201
    status, body = await purchase(api, "o1", "u2", 1)
    assert (status, body["code"]) == (409, "INSUFFICIENT_INVENTORY")
    await _past_expiry()
    # no sweeper ran: the read and the next purchase release the dead hold themselves
    assert await inventory(api, "o1") == {"total": 3, "available": 3, "reserved": 0, "sold": 0}
    assert (await purchase(api, "o1", "u2", 3))[0] == 201


async def test_patch_total_counts_only_live_holds(api: Api) -> None:
    await create_offer(api, "o1", 10)
    assert (await purchase(api, "o1", "u1", 3))[0] == 201
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"inventory_total": 2})
    assert (status, body["code"]) == (409, "INVENTORY_CONFLICT")
    await _past_expiry()
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"inventory_total": 2})
    assert status == 200 and body["inventory"] == {"total": 2, "available": 2, "reserved": 0, "sold": 0}


async def test_sandbox_checkout_completes_through_a_signed_webhook(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    assert runtime.purchases.provider.name == "sandbox"
    await create_offer(api, "o1", 5)
    status, held = await purchase(api, "o1", "u1", 2)
    assert status == 201
    assert "/v1/sandbox/checkout/" in held["checkout_url"]
    page = await api.client.get(f"/v1/sandbox/checkout/{held['checkout_session_id']}")
    assert page.status == 200 and "Pay" in await page.text()
    status, result = await api.call("POST", f"/v1/sandbox/checkout/{held['checkout_session_id']}/complete",
                                    headers={})
    assert status == 200 and result["webhook_status"] == 200, result
    assert result["webhook_response"]["outcome"] == "confirmed"
    assert await inventory(api, "o1") == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    # the sandbox signs with the same scheme Stripe uses: a forged one is refused
    status, body = await webhook(api, b'{"id": "evt_x", "type": "checkout.session.completed"}',
                                 {"Stripe-Signature": "t=1,v1=00"})
    assert (status, body["code"]) == (400, "INVALID_SIGNATURE")
    status, held2 = await purchase(api, "o1", "u2", 1)
    status, result = await api.call("POST", f"/v1/sandbox/checkout/{held2['checkout_session_id']}/expire",
                                    headers={})
    assert result["webhook_response"]["outcome"] == "released"
    await persister.drain()
    assert await runtime.pool.fetchval("SELECT COUNT(*) FROM webhook_events") == 2


async def test_completed_after_the_hold_expired_by_itself_retakes(api: Api) -> None:
    await create_offer(api, "o1", 5)
    _status, held = await purchase(api, "o1", "u1", 2)
    await _past_expiry()
    assert await inventory(api, "o1") == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    _, result = await api.call("POST", f"/v1/sandbox/checkout/{held['checkout_session_id']}/complete",
                               headers={})
    assert result["webhook_response"]["outcome"] == "retaken"
    assert await inventory(api, "o1") == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
