"""``client.offers``, ``client.purchases`` and ``client.sandbox`` against the live server.

Every method, the refusals a purchase can meet, and purchases whose answers get lost:
the client's retries carry one ``Idempotency-Key`` and the server replays the first
answer, so there is exactly one purchase in the end.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from dropgate.client import (
    AlreadyExists,
    AsyncDropgate,
    Dropgate,
    IdempotencyKeyReused,
    InsufficientInventory,
    InventoryConflict,
    NotFound,
    OfferUnavailable,
    QuantityLimit,
    RateLimited,
    SubscriptionInactive,
    ValidationError,
)
from dropgate.models.offers import Offer, OfferInventory, PurchaseCreated
from tests.client.conftest import FaultyProxy, LiveServer, TenantAccess

FAST = {"backoff": 0.01, "max_backoff": 0.05}


async def _offer(dg: AsyncDropgate, offer_id: str, total: int = 5, **kw: object) -> Offer:
    fields: dict[str, object] = {"event_id": "gig", "name": "Front row", "price": "49.9",
                                 "currency": "usd", "inventory_total": total, **kw}
    return await dg.offers.create(offer_id, **fields)  # type: ignore[arg-type]


async def test_create_list_get_update(dg: AsyncDropgate) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    offer = await _offer(dg, "FRONT", total=100, max_per_order=4, expires_at=expires)
    assert (offer.offer_id, offer.event_id, offer.price, offer.max_per_order, offer.expires_at,
            offer.active, offer.archived) == ("FRONT", "gig", "49.90", 4, expires, True, False)
    assert offer.inventory == OfferInventory(total=100, available=100, reserved=0, sold=0)
    generated = await dg.offers.create(event_id="gig", name="Back", price="10", currency="jpy",
                                       inventory_total=1)
    assert generated.offer_id and generated.price == "10"
    await _offer(dg, "OTHER", event_id="another")
    listed = await dg.offers.list("gig")
    assert isinstance(listed, list) and {o.offer_id for o in listed} == {"FRONT", generated.offer_id}
    assert await dg.offers.get("FRONT") == offer
    updated = await dg.offers.update("FRONT", inventory_total=50, expires_at=None)
    assert (updated.inventory.total, updated.inventory.available, updated.expires_at) == (50, 50, None)
    assert await dg.offers.update("FRONT") == updated
    archived = await dg.offers.update(generated.offer_id, archived=True)
    assert archived.archived and [o.offer_id for o in await dg.offers.list("gig")] == ["FRONT"]
    assert await dg.offers.list("nothing-here") == []


async def test_purchase_pay_and_cancel_through_the_sandbox(dg: AsyncDropgate) -> None:
    await _offer(dg, "PAY", total=5)
    created = await dg.offers.purchase("PAY", user_id="u1", quantity=2)
    assert isinstance(created, PurchaseCreated) and created.status == "pending"
    assert created.checkout_url and created.checkout_session_id
    assert (await dg.offers.get("PAY")).inventory == OfferInventory(total=5, available=3, reserved=2,
                                                                    sold=0)
    paid = await dg.sandbox.complete(created.checkout_session_id)
    assert paid.webhook_status == 200 and paid.webhook_response["received"] is True
    purchase = await dg.purchases.get(created.purchase_id)
    assert (purchase.status, purchase.quantity, purchase.user_id, purchase.amount, purchase.offer_id) == (
        "paid", 2, "u1", "99.80", "PAY")
    abandoned = await dg.offers.purchase("PAY", user_id="u2")
    assert (await dg.sandbox.expire(abandoned.checkout_session_id)).webhook_status == 200
    assert (await dg.purchases.get(abandoned.purchase_id)).status in ("released", "expired")
    assert (await dg.offers.get("PAY")).inventory == OfferInventory(total=5, available=3, reserved=0,
                                                                    sold=2)


async def test_refusals(admin: AsyncDropgate, tenant: TenantAccess,
                        dg: AsyncDropgate) -> None:
    await _offer(dg, "FEW", total=2, max_per_order=2)
    with pytest.raises(AlreadyExists):
        await _offer(dg, "FEW")
    with pytest.raises(ValidationError) as bad_price:
        await _offer(dg, "BAD", price="1.234")
    assert bad_price.value.details["field"] == "price"
    with pytest.raises(NotFound):
        await dg.offers.get("NOPE")
    with pytest.raises(NotFound):
        await dg.offers.purchase("NOPE", user_id="u1")
    with pytest.raises(NotFound):
        await dg.purchases.get("NOPE")
    with pytest.raises(NotFound):
        await dg.sandbox.complete("not-a-session")
    with pytest.raises(ValidationError):
        await dg.offers.list("bad id!")
    with pytest.raises(QuantityLimit):
        await dg.offers.purchase("FEW", user_id="u1", quantity=3)
    await dg.offers.purchase("FEW", user_id="u1", quantity=2)
    with pytest.raises(InsufficientInventory):
        await dg.offers.purchase("FEW", user_id="u2")
    with pytest.raises(InventoryConflict):  # below reserved + sold
        await dg.offers.update("FEW", inventory_total=1)
    await dg.offers.update("FEW", inventory_total=3, active=False)
    with pytest.raises(OfferUnavailable):
        await dg.offers.purchase("FEW", user_id="u2")
    await _offer(dg, "KEYED", total=10)
    await dg.offers.purchase("KEYED", user_id="u1", idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):  # the same key with another body
        await dg.offers.purchase("KEYED", user_id="u1", quantity=2, idempotency_key="k-1")
    await admin.tenants.set_subscription(tenant.tenant_id, subscription_status="suspended")
    with pytest.raises(SubscriptionInactive):
        await dg.offers.purchase("KEYED", user_id="u3")


async def test_one_user_past_the_burst_is_rate_limited(dg: AsyncDropgate) -> None:
    await _offer(dg, "BURST", total=1000)
    results = await asyncio.gather(*(dg.offers.purchase("BURST", user_id="eager") for _ in range(30)),
                                   return_exceptions=True)
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert limited and all(r.retry_after is not None and r.retry_after > 0 for r in limited)
    assert all(isinstance(r, PurchaseCreated | RateLimited) for r in results), results
    assert (await dg.offers.get("BURST")).inventory.reserved == len(results) - len(limited)


def _keys(proxy: FaultyProxy) -> list[str | None]:
    return [s.headers.get("Idempotency-Key") for s in proxy.seen]


async def test_purchase_after_503s_reaches_the_server_once_with_one_idempotency_key(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await _offer(dg, "R1", total=10)
    proxy.fail_first(3)
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        created = await client.offers.purchase("R1", user_id="u1")
    assert created.status == "pending"
    assert len(proxy.seen) == 4 and len(proxy.forwarded) == 1
    keys = _keys(proxy)
    assert keys[0] and len(set(keys)) == 1, keys  # one key, kept across every attempt
    assert proxy.forwarded[0].headers["Idempotency-Key"] == keys[0]
    assert (await dg.offers.get("R1")).inventory.reserved == 1  # one purchase in the end


async def test_a_purchase_whose_answer_is_lost_is_replayed_not_repeated(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await _offer(dg, "R2", total=10)
    # the server holds the units and answers; the connection is cut before the answer
    # arrives; the retry carries the same key and gets the first 201 back
    proxy.drop_after_forward_first = 1
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=2, **FAST) as client:
        created = await client.offers.purchase("R2", user_id="u1", quantity=3)
    assert len(proxy.forwarded) == 2
    keys = [s.headers["Idempotency-Key"] for s in proxy.forwarded]
    assert keys[0] and keys[0] == keys[1]
    assert created.status == "pending"
    assert (await dg.purchases.get(created.purchase_id)).quantity == 3
    assert (await dg.offers.get("R2")).inventory == OfferInventory(total=10, available=7, reserved=3,
                                                                   sold=0)
    # the same key later still answers that one purchase
    again = await dg.offers.purchase("R2", user_id="u1", quantity=3, idempotency_key=keys[0])
    assert again == created
    assert (await dg.offers.get("R2")).inventory.reserved == 3


def test_the_sync_client_sells_an_offer(live: LiveServer, tenant: TenantAccess) -> None:
    with Dropgate(live.url, tenant.service_key, retries=0) as dg:
        dg.offers.create("SYNC", event_id="sync-gig", name="Seat", price="5", currency="usd",
                         inventory_total=1)
        assert [o.offer_id for o in dg.offers.list("sync-gig")] == ["SYNC"]
        created = dg.offers.purchase("SYNC", user_id="u1")
        assert dg.sandbox.complete(created.checkout_session_id).webhook_status == 200
        assert dg.purchases.get(created.purchase_id).status == "paid"
        with pytest.raises(InsufficientInventory):
            dg.offers.purchase("SYNC", user_id="u2")
        # list methods are plain iterators here, paging on the client's own loop
        for i in range(5):
            dg.invites.create(f"SY{i}", max_uses=1)
        listed = dg.invites.list(page_size=2, consistent=True)
        assert not hasattr(listed, "__anext__")
        assert [inv.code for inv in listed] == [f"SY{i}" for i in reversed(range(5))]
        assert [p.purchase_id for p in dg.purchases.list(consistent=True)] == [created.purchase_id]


async def test_cancel_refund_caps_and_checkout_urls(dg: AsyncDropgate, admin: AsyncDropgate,
                                                    tenant: TenantAccess) -> None:
    from dropgate.client import PurchaseNotPaid, PurchaseNotPending, RefundExceedsPayment, UserLimit

    urls = await admin.tenants.set_checkout(tenant.tenant_id, success_url="https://shop.test/ok")
    assert (urls.success_url, urls.cancel_url) == ("https://shop.test/ok", None)
    await _offer(dg, "CAP", total=10, max_per_user=3)
    held = await dg.offers.purchase("CAP", user_id="u1", quantity=2)
    with pytest.raises(UserLimit):
        await dg.offers.purchase("CAP", user_id="u1", quantity=2)
    canceled = await dg.purchases.cancel(held.purchase_id)
    assert canceled.status == "canceled"
    with pytest.raises(PurchaseNotPending):
        await dg.purchases.cancel(held.purchase_id)
    with pytest.raises(PurchaseNotPaid):
        await dg.purchases.refund(held.purchase_id)
    paid = await dg.offers.purchase("CAP", user_id="u1", quantity=3)
    await dg.sandbox.complete(paid.checkout_session_id)
    part = await dg.purchases.refund(paid.purchase_id, amount="10.00", idempotency_key="r1")
    assert (part.status, part.refunded_amount) == ("partially_refunded", "10.00")
    with pytest.raises(RefundExceedsPayment):
        await dg.purchases.refund(paid.purchase_id, amount="200")
    full = await dg.purchases.refund(paid.purchase_id)
    assert (full.status, full.refunded_amount) == ("refunded", "149.70")
    assert (await dg.offers.get("CAP")).inventory == OfferInventory(total=10, available=10, reserved=0, sold=0)
