"""Stripe webhooks: signatures, repeats, and late or out-of-order events."""

from __future__ import annotations

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import (
    create_offer,
    fake_stripe,
    hold,
    inventory,
    pg_offer,
    purchase_status,
    stripe_settings_fixture,
    webhook,
)

__all__ = ["fake_stripe"]


settings = stripe_settings_fixture()


async def test_bad_signatures_are_refused(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1")
    payload, headers = fake_stripe.event("checkout.session.completed", held["checkout_session_id"],
                                         secret="whsec_wrong")
    status, body = await webhook(api, payload, headers)
    assert (status, body["code"]) == (400, "INVALID_SIGNATURE")
    payload, headers = fake_stripe.event("checkout.session.completed", held["checkout_session_id"])
    status, body = await webhook(api, payload.replace(b'"paid"', b'"PAID"'), headers)  # tampered
    assert (status, body["code"]) == (400, "INVALID_SIGNATURE")
    status, body = await webhook(api, payload, {"Content-Type": "application/json"})  # unsigned
    assert (status, body["code"]) == (400, "INVALID_SIGNATURE")
    assert await purchase_status(api, held["purchase_id"]) == "pending"
    assert (await inventory(api, "o1"))["sold"] == 0


async def test_replayed_event_changes_nothing(api: Api, fake_stripe: FakeStripe, runtime: Runtime,
                                              persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    payload, headers = fake_stripe.event("checkout.session.completed", held["checkout_session_id"])
    outcomes = [(await webhook(api, payload, headers))[1]["outcome"] for _ in range(3)]
    assert outcomes == ["confirmed", "duplicate", "duplicate"]
    # a second event (another id) for the same payment is a no-op too
    payload2, headers2 = fake_stripe.event("checkout.session.completed", held["checkout_session_id"])
    assert (await webhook(api, payload2, headers2))[1]["outcome"] == "noop"
    assert await inventory(api, "o1") == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    await persister.drain()
    row = await pg_offer(runtime, "acme", "o1")
    assert (row["sold"], row["rows_sold"], row["reserved"]) == (2, 2, 0)
    assert await runtime.pool.fetchval("SELECT COUNT(*) FROM webhook_events") == 2


async def test_expired_after_completed_is_a_noop(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    sid = held["checkout_session_id"]
    assert (await webhook(api, *fake_stripe.event("checkout.session.completed", sid)))[1]["outcome"] == "confirmed"
    assert (await webhook(api, *fake_stripe.event("checkout.session.expired", sid)))[1]["outcome"] == "noop"
    assert await purchase_status(api, held["purchase_id"]) == "paid"
    assert await inventory(api, "o1") == {"total": 5, "available": 3, "reserved": 0, "sold": 2}


async def test_expired_releases_the_hold(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 3)
    payload, headers = fake_stripe.event("checkout.session.expired", held["checkout_session_id"])
    assert (await webhook(api, payload, headers))[1]["outcome"] == "released"
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    assert await purchase_status(api, held["purchase_id"]) == "expired"
    assert await inventory(api, "o1") == {"total": 5, "available": 5, "reserved": 0, "sold": 0}


async def test_completed_after_expiry_retakes_units_when_available(
        api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    sid = held["checkout_session_id"]
    await webhook(api, *fake_stripe.event("checkout.session.expired", sid))
    status, body = await webhook(api, *fake_stripe.event("checkout.session.completed", sid))
    assert (status, body["outcome"]) == (200, "retaken")
    assert await purchase_status(api, held["purchase_id"]) == "paid"
    assert await inventory(api, "o1") == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    assert fake_stripe.refunds == []


async def test_completed_after_expiry_without_units_is_refunded(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 2)
    late = await hold(api, "o1", "late", 2)
    await webhook(api, *fake_stripe.event("checkout.session.expired", late["checkout_session_id"]))
    other = await hold(api, "o1", "quick", 2)  # the released units go to someone else
    await webhook(api, *fake_stripe.event("checkout.session.completed", other["checkout_session_id"]))
    payload, headers = fake_stripe.event("checkout.session.completed", late["checkout_session_id"])
    status, body = await webhook(api, payload, headers)
    assert (status, body["outcome"]) == (200, "refund")
    assert await purchase_status(api, late["purchase_id"]) == "refunded"
    assert [r["payment_intent"] for r in fake_stripe.refunds] == ["pi_" + late["checkout_session_id"]]
    assert await inventory(api, "o1") == {"total": 2, "available": 0, "reserved": 0, "sold": 2}
    # a redelivery neither refunds again nor sells
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    assert len(fake_stripe.refunds) == 1
    await persister.drain()
    row = await pg_offer(runtime, "acme", "o1")
    assert (row["sold"], row["rows_sold"], row["reserved"]) == (2, 2, 0)
    pg_status, refund_id = await runtime.pool.fetchrow(
        "SELECT status, refund_id FROM offer_purchases WHERE purchase_id = $1", late["purchase_id"])
    assert pg_status == "refunded" and refund_id == fake_stripe.refunds[0]["id"]


async def test_failed_refund_is_retried_on_redelivery(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 1)
    late = await hold(api, "o1", "late")
    await webhook(api, *fake_stripe.event("checkout.session.expired", late["checkout_session_id"]))
    other = await hold(api, "o1", "quick")
    await webhook(api, *fake_stripe.event("checkout.session.completed", other["checkout_session_id"]))
    fake_stripe.refund_mode = "fail"
    payload, headers = fake_stripe.event("checkout.session.completed", late["checkout_session_id"])
    status, body = await webhook(api, payload, headers)
    assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE")  # Stripe will redeliver
    assert await purchase_status(api, late["purchase_id"]) == "refunded"  # never sold: no units left
    fake_stripe.refund_mode = "ok"
    status, body = await webhook(api, payload, headers)
    assert (status, body["outcome"]) == (200, "refund")
    assert len(fake_stripe.refunds) == 1
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    assert len(fake_stripe.refunds) == 1


async def test_events_without_a_purchase_are_acknowledged(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 1)
    held = await hold(api, "o1", "u1")
    fake_stripe.sessions[held["checkout_session_id"]]["metadata"] = {}
    status, body = await webhook(api, *fake_stripe.event("checkout.session.completed",
                                                          held["checkout_session_id"]))
    assert (status, body["outcome"]) == (200, "ignored")
    fake_stripe.sessions[held["checkout_session_id"]]["metadata"] = {
        "tenant_id": "acme", "offer_id": "o1", "purchase_id": "pu_unknown"}
    status, body = await webhook(api, *fake_stripe.event("checkout.session.completed",
                                                          held["checkout_session_id"]))
    assert (status, body["outcome"]) == (200, "unknown_purchase")
