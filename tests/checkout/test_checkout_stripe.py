"""Taking real money through Stripe (the fake, driven by the real ``stripe`` library):
the session returns the buyer to pages that exist, the fake refuses what Stripe
refuses, a signed webhook that does not match its purchase changes nothing, a signed
but unreadable one is a clean 400, and the sandbox cannot pay a Stripe purchase."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
import stripe

from dropgate.checkout.payments.base import ProviderConfigError, sign_payload
from dropgate.checkout.payments.sandbox import session_id_for
from dropgate.checkout.payments.stripe_provider import StripeProvider
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.fake_stripe import API_KEY, IDEMPOTENCY_MISMATCH, WEBHOOK_SECRET, FakeStripe
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
PUBLIC = "https://shop.example.test"


settings = stripe_settings_fixture(public_url=PUBLIC)


async def _page(api: Api, url: str) -> tuple[int, str]:
    """GET one of our pages by the absolute URL a provider redirects to."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC, url
    response = await api.client.get(f"{parts.path}?{parts.query}")
    return response.status, await response.text()


async def _agree(runtime: Runtime, persister: Persister, api: Api, offer_id: str) -> dict[str, Any]:
    """PostgreSQL (counters and rows) equals Redis once the persister drained."""
    await persister.drain()
    live = await inventory(api, offer_id)
    row = await pg_offer(runtime, api.tenant_id, offer_id)
    assert (row["reserved"], row["sold"]) == (live["reserved"], live["sold"]), (row, live)
    assert (row["rows_reserved"], row["rows_sold"]) == (live["reserved"], live["sold"]), (row, live)
    return row


async def test_the_session_returns_the_buyer_to_pages_that_exist(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    pid, sid = held["purchase_id"], held["checkout_session_id"]
    session = fake_stripe.sessions[sid]
    assert session["success_url"] == (f"{PUBLIC}/checkout/done?tenant_id=acme&purchase_id={pid}"
                                      "&session_id={CHECKOUT_SESSION_ID}")
    assert session["cancel_url"] == f"{PUBLIC}/checkout/cancelled?tenant_id=acme&purchase_id={pid}"
    hold_expiry = datetime.fromisoformat(held["expires_at"].replace("Z", "+00:00")).timestamp()
    assert session["expires_at"] == math.ceil(hold_expiry)  # the session lasts as long as the hold

    status, page = await _page(api, fake_stripe.return_url(sid, paid=False))
    assert status == 200 and '<strong id="status">pending</strong>' in page, page
    assert "Offer o1" in page and "2 x" in page and "50.00 USD" in page
    assert 'http-equiv="refresh"' in page  # live: it reloads itself while pending

    payload, headers = fake_stripe.event("checkout.session.completed", sid)
    assert (await webhook(api, payload, headers)) == (200, {"received": True, "outcome": "confirmed"})
    status, page = await _page(api, fake_stripe.return_url(sid, paid=True))
    assert status == 200 and '<strong id="status">paid</strong>' in page, page
    assert f"session_id={sid}" in fake_stripe.return_url(sid, paid=True)
    assert 'http-equiv="refresh"' not in page
    row = await _agree(runtime, persister, api, "o1")
    assert (row["sold"], row["reserved"]) == (2, 0)


async def test_the_pages_refuse_unknown_purchases_and_parameters(api: Api) -> None:
    response = await api.client.get("/checkout/done?tenant_id=acme&purchase_id=pu_nope")
    assert response.status == 404 and (await response.json())["code"] == "NOT_FOUND"
    response = await api.client.get("/checkout/done?purchase_id=pu_nope")  # the tenant looked up
    assert response.status == 404 and (await response.json())["code"] == "NOT_FOUND"
    for query in ("tenant_id=acme", "tenant_id=acme&purchase_id=pu_x&x=1",
                  "tenant_id=a%20b&purchase_id=pu_x", "purchase_id=pu%20x"):
        response = await api.client.get(f"/checkout/cancelled?{query}")
        assert response.status == 400, query
        assert (await response.json())["code"] == "VALIDATION_ERROR"


# -- the fake refuses what Stripe refuses ---------------------------------------------
def _client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": fake.url},  # type: ignore[arg-type]
                               http_client=stripe.AIOHTTPClient(), max_network_retries=0)


def _params(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 500,
                                                      "product_data": {"name": "x"}}}],
        "expires_at": int(time.time()) + 3600,
        "success_url": "https://shop.example.test/done?s={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example.test/cancelled",
    }
    params.update(changes)
    return params


async def _refused(client: stripe.StripeClient, params: dict[str, Any], key: str) -> stripe.StripeError:
    with pytest.raises(stripe.StripeError) as caught:
        await client.v1.checkout.sessions.create_async(params=params,  # type: ignore[arg-type]
                                                       options={"idempotency_key": key})
    return caught.value


@pytest.mark.parametrize(("changes", "param"), [
    ({"success_url": "/checkout/done"}, "success_url"),
    ({"success_url": "ftp://shop.example.test/done"}, "success_url"),
    ({"cancel_url": "https://"}, "cancel_url"),
    ({"cancel_url": "https://shop.example.test/" + "x" * 5000}, "cancel_url"),
    ({"expires_at": 29 * 60}, "expires_at"),  # seconds from now, made absolute when run
    ({"expires_at": 24 * 3600 + 120}, "expires_at"),
])
async def test_the_fake_refuses_what_stripe_refuses(fake_stripe: FakeStripe, changes: dict[str, Any],
                                                    param: str) -> None:
    client = _client(fake_stripe)
    if "expires_at" in changes:  # relative at collection, which may be minutes before the run
        changes = {"expires_at": int(time.time()) + changes["expires_at"]}
    error = await _refused(client, _params(**changes), key="k1")
    assert isinstance(error, stripe.InvalidRequestError), error
    assert (error.http_status, error.param) == (400, param)
    assert fake_stripe.sessions == {}
    # a refused request stores nothing under its key: the key still works
    made = await client.v1.checkout.sessions.create_async(params=_params(),  # type: ignore[arg-type]
                                                          options={"idempotency_key": "k1"})
    assert made.id in fake_stripe.sessions


async def test_the_fake_keeps_idempotency_keys_as_stripe_does(fake_stripe: FakeStripe) -> None:
    client = _client(fake_stripe)
    params = _params()
    first = await client.v1.checkout.sessions.create_async(params=params,  # type: ignore[arg-type]
                                                           options={"idempotency_key": "k2"})
    again = await client.v1.checkout.sessions.create_async(params=params,  # type: ignore[arg-type]
                                                           options={"idempotency_key": "k2"})
    assert again.id == first.id and len(fake_stripe.sessions) == 1
    error = await _refused(client, _params(cancel_url="https://shop.example.test/other"), key="k2")
    assert isinstance(error, stripe.IdempotencyError), error
    assert error.http_status == 400 and str(error.user_message) == IDEMPOTENCY_MISMATCH.format(key="k2")
    assert len(fake_stripe.sessions) == 1


async def test_stripe_refuses_a_hold_its_sessions_cannot_last(make_settings: Callable[..., Settings]) -> None:
    for ttl in (60, 25 * 3600):
        with pytest.raises(ProviderConfigError, match=r"^DROPGATE_HOLD_TTL_S must be from 1860 to"):
            StripeProvider(make_settings(payment_provider="stripe", stripe_api_key=API_KEY,
                                         stripe_webhook_secret=WEBHOOK_SECRET, hold_ttl_s=ttl))


# -- webhooks matched to their purchase ---------------------------------------------------
async def test_a_webhook_that_does_not_match_its_purchase_changes_nothing(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    a = await hold(api, "o1", "ua", 1)
    b = await hold(api, "o1", "ub", 2)
    b_meta = dict(fake_stripe.sessions[b["checkout_session_id"]]["metadata"])
    forged = [
        # A's (cheaper) session, its metadata naming B
        fake_stripe.event("checkout.session.completed", a["checkout_session_id"], metadata=b_meta),
        fake_stripe.event("checkout.session.completed", b["checkout_session_id"], amount_total=100),
        fake_stripe.event("checkout.session.completed", b["checkout_session_id"], currency="eur"),
        fake_stripe.event("checkout.session.completed", b["checkout_session_id"], amount_total="5000"),
        # an expiry for another session cannot release B's hold either
        fake_stripe.event("checkout.session.expired", a["checkout_session_id"], metadata=b_meta),
    ]
    for payload, headers in forged:
        assert await webhook(api, payload, headers) == (200, {"received": True, "outcome": "mismatch"})
    assert await purchase_status(api, b["purchase_id"]) == "pending"
    assert await purchase_status(api, a["purchase_id"]) == "pending"
    assert await inventory(api, "o1") == {"total": 5, "available": 2, "reserved": 3, "sold": 0}
    metrics = await (await api.client.get("/metrics")).text()
    assert "dropgate_webhook_mismatches_total 5.0" in metrics, metrics
    row = await _agree(runtime, persister, api, "o1")
    assert row["rows_sold"] == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM webhook_events") == 0

    # the genuine event (currency in any case, as Stripe sends lower case) still applies
    payload, headers = fake_stripe.event("checkout.session.completed", b["checkout_session_id"],
                                         currency="USD")
    assert await webhook(api, payload, headers) == (200, {"received": True, "outcome": "confirmed"})
    assert await inventory(api, "o1") == {"total": 5, "available": 2, "reserved": 1, "sold": 2}
    row = await _agree(runtime, persister, api, "o1")
    assert row["rows_sold"] == 2


@pytest.mark.parametrize(("body", "message"), [
    (b"not json at all", "The webhook event is not a JSON object."),
    (b"[1, 2]", "The webhook event is not a JSON object."),
    (b'{"id": "evt_1", "type": "checkout.session.completed"}',
     "The webhook event's data.object is not an object."),
    (b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": [1]}}',
     "The webhook event's data.object is not an object."),
    (b'{"id": 7, "type": "checkout.session.completed", "data": {"object": {}}}',
     "The webhook event has no id."),
    (b'{"id": "evt_1", "data": {"object": {}}}', "The webhook event has no type."),
])
async def test_a_signed_unreadable_event_is_a_clean_400(api: Api, body: bytes, message: str) -> None:
    status, answer = await webhook(api, body, {"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET),
                                               "Content-Type": "application/json"})
    assert (status, answer["code"], answer["error"]) == (400, "VALIDATION_ERROR", message), answer
    status, answer = await webhook(api, body, {"Stripe-Signature": sign_payload(body, "whsec_other")})
    assert (status, answer["code"], answer["error"]) == (
        400, "INVALID_SIGNATURE", "The webhook signature is invalid."), answer


async def test_the_sandbox_cannot_pay_a_stripe_purchase(api: Api, fake_stripe: FakeStripe,
                                                        runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1")
    forged = session_id_for("acme", held["purchase_id"])
    for path in (f"/v1/sandbox/checkout/{forged}", f"/v1/sandbox/checkout/{held['checkout_session_id']}"):
        response = await api.client.get(path)
        assert response.status == 404
        for action in ("complete", "expire"):
            response = await api.client.post(f"{path}/{action}", data={"x": "1"})
            assert response.status == 404, await response.text()
    assert await purchase_status(api, held["purchase_id"]) == "pending"
    row = await _agree(runtime, persister, api, "o1")
    assert (row["reserved"], row["sold"]) == (1, 0)


def test_the_event_helper_is_stripe_shaped(fake_stripe: FakeStripe) -> None:
    """The forged events above are only meaningful if the genuine ones verify."""
    fake_stripe.sessions["cs_x"] = {"id": "cs_x", "metadata": {}}
    payload, headers = fake_stripe.event("checkout.session.completed", "cs_x")
    event = stripe.Webhook.construct_event(payload.decode(), headers["Stripe-Signature"], WEBHOOK_SECRET)
    assert event["data"]["object"]["id"] == "cs_x"
    assert msgspec.json.decode(payload)["type"] == "checkout.session.completed"


async def test_a_completion_before_its_session_is_recorded_is_redelivered(runtime: Runtime) -> None:
    """The session id is stored just after the 201; an event naming the purchase before
    that cannot be matched yet: 503, so that Stripe redelivers it, never a guess."""
    from dropgate.engine.offers import PurchaseRecord
    from dropgate.errors import PaymentProviderUnavailable

    record = PurchaseRecord(purchase_id="pu_1", tenant_id="acme", offer_id="o1", user_id="u1", quantity=1,
                            status="pending", amount_minor=2500, currency="usd", hold_expires_ms=0,
                            created_ms=0, updated_ms=0, version=1)
    session = {"id": "cs_test_1", "amount_total": 2500, "currency": "usd"}
    with pytest.raises(PaymentProviderUnavailable):
        runtime.webhooks._mismatch("checkout.session.completed", session, record)
    record.session_id = "cs_test_1"
    assert runtime.webhooks._mismatch("checkout.session.completed", session, record) is None
    assert runtime.webhooks._mismatch("checkout.session.completed", {**session, "amount_total": 2499},
                                      record) == "amount_total 2499 is not the purchase's 2500"
