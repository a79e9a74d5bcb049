"""``GET /v1/offers`` in list form (v1.1), and the v1 ``?event_id=`` form kept as it was."""

from __future__ import annotations

from typing import Any

from dropgate.client import AsyncDropgate
from dropgate.persistence.persister import Persister
from tests.conftest import Api
from tests.http.test_lists_api import running, walk


async def _offer(api: Api, offer_id: str, event_id: str, **extra: Any) -> None:
    status, body = await api.call("POST", "/v1/offers", json={
        "offer_id": offer_id, "event_id": event_id, "name": "Seat", "price": "12.50",
        "currency": "usd", "inventory_total": 10, **extra})
    assert status == 201, body


async def _seed(api: Api, persister: Persister) -> None:
    for i in range(7):
        await _offer(api, f"o{i}", "e1" if i % 2 == 0 else "e2", active=i != 4)
    status, body = await api.call("PATCH", "/v1/offers/o2", json={"archived": True})
    assert status == 200, body
    await persister.drain()


async def test_offers_list_form_pages_newest_first_with_filters(api: Api, persister: Persister) -> None:
    await _seed(api, persister)
    items = await walk(api, "/v1/offers", limit=3)
    assert [o["offer_id"] for o in items] == [f"o{i}" for i in reversed(range(7))]
    assert items[0]["inventory"] == {"total": 10, "available": 10, "reserved": 0, "sold": 0}
    assert items[0]["price"] == "12.50"
    e1 = await walk(api, "/v1/offers", limit=2, event_id="e1")
    assert [o["offer_id"] for o in e1] == ["o6", "o4", "o2", "o0"]  # archived o2 included
    e1_active = await walk(api, "/v1/offers", limit=1, event_id="e1", active="true")
    assert [o["offer_id"] for o in e1_active] == ["o6", "o2", "o0"]
    inactive = await walk(api, "/v1/offers", limit=5, active="false")
    assert [o["offer_id"] for o in inactive] == ["o4"]
    # no query at all is the list form too (v1 answered 400 for a missing event_id)
    status, page = await api.call("GET", "/v1/offers")
    assert status == 200 and len(page["data"]) == 7 and page["has_more"] is False


async def test_offers_v1_event_form_keeps_its_v1_answer(api: Api, persister: Persister) -> None:
    await _seed(api, persister)
    await _offer(api, "late", "e1")  # not persisted yet: the v1 form is live
    status, body = await api.call("GET", "/v1/offers?event_id=e1")
    assert status == 200 and set(body) == {"offers"}, body
    # active, unarchived, unexpired: o4 inactive, o2 archived
    assert sorted(o["offer_id"] for o in body["offers"]) == ["late", "o0", "o6"]
    status, body = await api.call("GET", "/v1/offers?event_id=bad%20id")
    assert status == 400 and body["code"] == "VALIDATION_ERROR"
    # any paging parameter asks for the list form
    async with running(persister):
        status, body = await api.call("GET", "/v1/offers?event_id=e1&consistent=true")
    assert status == 200 and [o["offer_id"] for o in body["data"]] == ["late", "o6", "o4", "o2", "o0"]


async def test_offers_list_bad_input_is_400(api: Api) -> None:
    for query in ("limit=0", "limit=1001", "cursor=nope", "active=yes", "colour=red",
                  "event_id=e1&limit=x"):
        status, body = await api.call("GET", f"/v1/offers?{query}")
        assert status == 400 and body["code"] == "VALIDATION_ERROR", (query, body)
    status, page = await api.call("GET", "/v1/purchases?limit=1")
    assert status == 200
    status, page = await api.call("GET", "/v1/offers?limit=1")
    status, body = await api.call("GET", f"/v1/offers?limit=1&cursor={page['next_cursor'] or 'x'}")
    assert status == 400


async def test_client_iterates_offer_pages(api: Api, persister: Persister) -> None:
    await _seed(api, persister)
    base = str(api.client.make_url("/")).rstrip("/")
    async with AsyncDropgate(base, api.service_key, retries=0) as dg:
        every = [o.offer_id async for o in dg.offers.iterate(page_size=2)]
        assert every == [f"o{i}" for i in reversed(range(7))]
        # event_id alone must still page (the client always sends limit)
        e2 = [o.offer_id async for o in dg.offers.iterate(event_id="e2")]
        assert e2 == ["o5", "o3", "o1"]
        active = [o.offer_id async for o in dg.offers.iterate(event_id="e1", active=False)]
        assert active == ["o4"]
        listed = await dg.offers.list("e1")  # the v1 method, unchanged
        assert sorted(o.offer_id for o in listed) == ["o0", "o6"]
        await _offer(api, "o7", "e2")
        async with running(persister):
            fresh = [o.offer_id async for o in dg.offers.iterate(event_id="e2", consistent=True)]
        assert fresh == ["o7", "o5", "o3", "o1"]
