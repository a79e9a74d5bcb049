"""The sandbox's checkout page as a browser posts it (303 to the purchase's return
pages), as the client calls it (200 JSON), and dropgate's done/cancelled pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from dropgate.checkout.redirects import resolve_redirects
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.offers import create_offer, inventory, pg_offer, purchase

PUBLIC = "http://buyers.example.test:8080"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(public_url=PUBLIC + "/")


async def _hold(api: Api, user: str, qty: int = 1) -> dict[str, Any]:
    status, body = await purchase(api, "o1", user, qty)
    assert status == 201, body
    return dict(body)


def _local(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC, url
    return f"{parts.path}?{parts.query}"


async def _agree(runtime: Runtime, persister: Persister, api: Api) -> dict[str, Any]:
    await persister.drain()
    live = await inventory(api, "o1")
    row = await pg_offer(runtime, api.tenant_id, "o1")
    assert (row["reserved"], row["sold"], row["rows_reserved"], row["rows_sold"]) == (
        live["reserved"], live["sold"], live["reserved"], live["sold"]), (row, live)
    return row


async def test_pay_by_form_redirects_to_the_done_page(api: Api, runtime: Runtime,
                                                      persister: Persister) -> None:
    await create_offer(api, "o1", 4)
    held = await _hold(api, "u1", 2)
    pid, sid = held["purchase_id"], held["checkout_session_id"]
    assert held["checkout_url"] == f"{PUBLIC}/v1/sandbox/checkout/{sid}"
    page = await (await api.client.get(_local(held["checkout_url"]))).text()
    assert f'action="/v1/sandbox/checkout/{sid}/complete"' in page and 'method="post"' in page

    response = await api.client.post(f"/v1/sandbox/checkout/{sid}/complete", data="", headers=FORM,
                                     allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location == f"{PUBLIC}/checkout/done?tenant_id=acme&purchase_id={pid}&session_id={sid}"
    done = await api.client.get(_local(location))
    text = await done.text()
    assert done.status == 200 and done.content_type == "text/html"
    assert '<strong id="status">paid</strong>' in text and "Paid: thank you." in text, text
    assert done.headers["Cache-Control"] == "no-store"
    row = await _agree(runtime, persister, api)
    assert (row["sold"], row["reserved"]) == (2, 0)


async def test_cancel_by_form_redirects_to_the_cancelled_page(api: Api, runtime: Runtime,
                                                              persister: Persister) -> None:
    await create_offer(api, "o1", 4)
    held = await _hold(api, "u1")
    pid, sid = held["purchase_id"], held["checkout_session_id"]
    response = await api.client.post(f"/v1/sandbox/checkout/{sid}/expire", data="", headers=FORM,
                                     allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"{PUBLIC}/checkout/cancelled?tenant_id=acme&purchase_id={pid}"
    text = await (await api.client.get(_local(response.headers["Location"]))).text()
    assert "Checkout cancelled" in text and "nothing was charged" in text
    # like Stripe's back link, the page's Cancel sends no event: the hold stays until it
    # expires (or is canceled), and the page keeps showing its live status
    assert '<strong id="status">pending</strong>' in text and 'http-equiv="refresh"' in text, text
    row = await _agree(runtime, persister, api)
    assert (row["sold"], row["reserved"]) == (0, 1)
    # the client's call (JSON) abandons it at once: checkout.session.expired
    response = await api.client.post(f"/v1/sandbox/checkout/{sid}/expire")
    assert response.status == 200 and (await response.json())["webhook_status"] == 200
    text = await (await api.client.get(_local(f"{PUBLIC}/checkout/cancelled?tenant_id=acme&purchase_id={pid}"))).text()
    assert '<strong id="status">expired</strong>' in text and 'http-equiv="refresh"' not in text, text
    row = await _agree(runtime, persister, api)
    assert (row["sold"], row["reserved"]) == (0, 0)


async def test_the_client_still_gets_json(api: Api, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 4)
    held = await _hold(api, "u1")
    response = await api.client.post(f"/v1/sandbox/checkout/{held['checkout_session_id']}/complete")
    body = await response.json()
    assert response.status == 200 and body["webhook_status"] == 200, body
    assert body["webhook_response"] == {"received": True, "outcome": "confirmed"}
    # the done page of a pending purchase refreshes itself until it is not pending
    other = await _hold(api, "u2")
    text = await (await api.client.get(
        f"/checkout/done?tenant_id=acme&purchase_id={other['purchase_id']}")).text()
    assert '<strong id="status">pending</strong>' in text and 'http-equiv="refresh"' in text
    row = await _agree(runtime, persister, api)
    assert (row["sold"], row["reserved"]) == (1, 1)


def test_the_resolver_prefers_the_offer_then_the_tenant_then_our_pages() -> None:
    base = "https://api.example.test"
    own = resolve_redirects(base, tenant_id="t1", purchase_id="pu_1")
    assert own.success_url == ("https://api.example.test/checkout/done?tenant_id=t1&purchase_id=pu_1"
                               "&session_id={CHECKOUT_SESSION_ID}")
    assert own.cancel_url == "https://api.example.test/checkout/cancelled?tenant_id=t1&purchase_id=pu_1"
    tenant = resolve_redirects(base, tenant_id="t1", purchase_id="pu_1",
                               tenant_success_url="https://t.example/ok/{PURCHASE_ID}",
                               tenant_cancel_url="https://t.example/no")
    assert (tenant.success_url, tenant.cancel_url) == ("https://t.example/ok/pu_1", "https://t.example/no")
    offer = resolve_redirects(base, tenant_id="t1", purchase_id="pu_1",
                              offer_success_url="https://o.example/ok?s={CHECKOUT_SESSION_ID}",
                              tenant_success_url="https://t.example/ok", tenant_cancel_url="https://t.example/no")
    assert (offer.success_url, offer.cancel_url) == ("https://o.example/ok?s={CHECKOUT_SESSION_ID}",
                                                     "https://t.example/no")


async def test_pages_find_a_purchase_by_its_id_alone(api: Api, runtime: Runtime,
                                                     persister: Persister) -> None:
    """docs/api.md's links carry ``purchase_id`` only: the tenant comes from the durable record."""
    await create_offer(api, "o1", 4)
    held = await _hold(api, "u1")
    await api.client.post(f"/v1/sandbox/checkout/{held['checkout_session_id']}/complete")
    row = await _agree(runtime, persister, api)
    assert (row["sold"], row["reserved"]) == (1, 0)
    response = await api.client.get(f"/checkout/done?purchase_id={held['purchase_id']}")
    text = await response.text()
    assert response.status == 200 and '<strong id="status">paid</strong>' in text, text
    missing = await api.client.get("/checkout/cancelled?purchase_id=pu_nosuchpurchase")
    assert missing.status == 404 and (await missing.json())["code"] == "NOT_FOUND"
    bad = await api.client.get("/checkout/done?purchase_id=" + "x" * 300)
    assert bad.status == 400 and (await bad.json())["code"] == "VALIDATION_ERROR"
