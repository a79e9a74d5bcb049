"""Fixtures and helpers of the offers and checkout tests: the one place their fake Stripe,
Stripe settings and purchase helpers are written. A module taking money through the fake
imports ``fake_stripe`` (listed in its ``__all__``) and declares
``settings = stripe_settings_fixture(...)``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.fake_stripe import API_KEY, WEBHOOK_SECRET, FakeStripe


@pytest.fixture
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


def stripe_settings(make_settings: Callable[..., Settings], fake: FakeStripe,
                    **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        payment_provider="stripe", stripe_api_key=API_KEY, stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake.url,
        stripe_timeout_s=1.0, tenant_concurrency=10_000)
    values.update(overrides)
    return make_settings(**values)


def stripe_settings_fixture(**overrides: Any) -> Any:
    """A module's ``settings`` fixture: Stripe through the ``fake_stripe`` fixture, with
    ``overrides`` (``settings = stripe_settings_fixture(stripe_timeout_s=1.5)``)."""

    @pytest.fixture(name="settings")
    def settings(make_settings: Callable[..., Settings], fake_stripe: FakeStripe) -> Settings:
        return stripe_settings(make_settings, fake_stripe, **overrides)

    return settings


async def create_offer(api: Api, offer_id: str, total: int, **fields: Any) -> dict[str, Any]:
    body = {"offer_id": offer_id, "event_id": "ev1", "name": f"Offer {offer_id}", "price": "25.00",
            "currency": "usd", "inventory_total": total, "max_per_order": 3, **fields}
    status, offer = await api.call("POST", "/v1/offers", json=body)
    assert status == 201, offer
    return dict(offer)


async def purchase(api: Api, offer_id: str, user_id: str, quantity: int = 1, *,
                   key: str | None = None) -> tuple[int, Any]:
    headers = dict(api.service)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.call("POST", f"/v1/offers/{offer_id}/purchase",
                          json={"user_id": user_id, "quantity": quantity}, headers=headers)


async def hold(api: Api, offer_id: str, user: str, qty: int = 1) -> dict[str, Any]:
    """A purchase that must succeed (201): its answer."""
    status, body = await purchase(api, offer_id, user, qty)
    assert status == 201, body
    return dict(body)


async def purchase_status(api: Api, purchase_id: str) -> str:
    status, body = await api.call("GET", f"/v1/purchases/{purchase_id}")
    assert status == 200, body
    return str(body["status"])


async def inventory(api: Api, offer_id: str) -> dict[str, int]:
    status, offer = await api.call("GET", f"/v1/offers/{offer_id}")
    assert status == 200, offer
    return dict(offer["inventory"])


async def webhook(api: Api, payload: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = await api.client.post("/v1/webhooks/stripe", data=payload, headers=headers)
    return response.status, await response.json()


async def pg_offer(runtime: Runtime, tenant_id: str, offer_id: str) -> dict[str, Any]:
    """The offer's PostgreSQL counters, and the same derived by SQL over the purchase rows."""
    row = await runtime.pool.fetchrow(
        """SELECT o.inventory_total, o.reserved, o.sold,
                  COALESCE(SUM(p.quantity) FILTER (WHERE p.status = 'pending'), 0) AS rows_reserved,
                  COALESCE(SUM(p.quantity) FILTER (WHERE p.status = 'paid'), 0) AS rows_sold,
                  COUNT(p.*) AS purchases
           FROM offers o LEFT JOIN offer_purchases p USING (tenant_id, offer_id)
           WHERE o.tenant_id = $1 AND o.offer_id = $2
           GROUP BY o.inventory_total, o.reserved, o.sold""", tenant_id, offer_id)
    assert row is not None
    return dict(row)
