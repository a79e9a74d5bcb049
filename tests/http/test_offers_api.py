"""Offers CRUD and listing, purchase reads, the batcher, script headers, OpenAPI."""

from __future__ import annotations

import asyncio

import pytest

from dropgate.engine.actors.batcher import Batcher, QueueFull
from dropgate.engine.scripts import sources
from dropgate.errors import ERRORS
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.offers import create_offer, purchase


async def test_create_get_patch(api: Api, runtime: Runtime, persister: Persister) -> None:
    offer = await create_offer(api, "o1", 10, price="19.9", expires_at="2099-01-01T00:00:00Z")
    assert offer["price"] == "19.90" and offer["inventory"] == {
        "total": 10, "available": 10, "reserved": 0, "sold": 0}
    status, body = await api.call("POST", "/v1/offers", json={
        "offer_id": "o1", "event_id": "ev1", "name": "x", "price": "1", "currency": "usd",
        "inventory_total": 1})
    assert (status, body["code"]) == (409, "ALREADY_EXISTS")
    status, body = await api.call("POST", "/v1/offers", json={
        "event_id": "ev1", "name": "gen", "price": "1000", "currency": "jpy", "inventory_total": 1})
    assert status == 201 and body["offer_id"].startswith("of_") and body["price"] == "1000"
    assert (await purchase(api, "o1", "u1", 3))[0] == 201
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"inventory_total": 2})
    assert (status, body["code"]) == (409, "INVENTORY_CONFLICT")
    assert body["details"] == {"inventory_total": 2, "reserved": 3, "sold": 0}
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"inventory_total": 3})
    assert status == 200 and body["inventory"]["available"] == 0
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"inventory_total": 50,
                                                                 "expires_at": None})
    assert status == 200 and body["inventory"]["available"] == 47 and body["expires_at"] is None
    assert (await api.call("GET", "/v1/offers/nope"))[0] == 404
    assert (await api.call("PATCH", "/v1/offers/nope", json={"active": False}))[0] == 404
    await persister.drain()
    row = await runtime.pool.fetchrow(
        "SELECT inventory_total, reserved, sold, price_minor, expires_at FROM offers "
        "WHERE tenant_id = 'acme' AND offer_id = 'o1'")
    assert dict(row) == {"inventory_total": 50, "reserved": 3, "sold": 0, "price_minor": 1990,
                         "expires_at": None}


@pytest.mark.parametrize("body", [
    {"event_id": "ev1", "name": "x", "price": "1.001", "currency": "usd", "inventory_total": 1},
    {"event_id": "ev1", "name": "x", "price": "-1", "currency": "usd", "inventory_total": 1},
    {"event_id": "ev1", "name": "x", "price": "0", "currency": "usd", "inventory_total": 1},
    {"event_id": "ev1", "name": "x", "price": "1", "currency": "usd", "inventory_total": -1},
    {"event_id": "bad id", "name": "x", "price": "1", "currency": "usd", "inventory_total": 1},
    {"event_id": "ev1", "name": "x", "price": "1", "currency": "usd", "inventory_total": 1, "extra": 1},
    {"event_id": "ev1", "name": "x", "price": "1", "currency": "USD", "inventory_total": 1},
])
async def test_invalid_offers_are_400(api: Api, body: dict[str, object]) -> None:
    status, answer = await api.call("POST", "/v1/offers", json=body)
    assert (status, answer["code"]) == (400, "VALIDATION_ERROR"), answer


async def test_list_shows_active_unarchived_unexpired(api: Api) -> None:
    await create_offer(api, "live", 5)
    await create_offer(api, "off", 5, active=False)
    await create_offer(api, "gone", 5)
    await api.call("PATCH", "/v1/offers/gone", json={"archived": True})
    await create_offer(api, "past", 5)
    await api.call("PATCH", "/v1/offers/past", json={"expires_at": "2001-01-01T00:00:00Z"})
    await create_offer(api, "elsewhere", 5, event_id="ev2")
    status, body = await api.call("GET", "/v1/offers?event_id=ev1")
    assert status == 200 and [o["offer_id"] for o in body["offers"]] == ["live"]
    # v1.1: without event_id it is the list form (docs/api.md "Lists"); v1 answered 400
    status, page = await api.call("GET", "/v1/offers")
    assert status == 200 and set(page) == {"data", "has_more", "next_cursor"}
    assert (await api.call("GET", "/v1/offers?event_id=nothing"))[1] == {"offers": []}


async def test_purchases_are_per_tenant(api: Api) -> None:
    await create_offer(api, "o1", 5)
    status, held = await purchase(api, "o1", "u1", 1)
    status, body = await api.call("GET", f"/v1/purchases/{held['purchase_id']}")
    assert status == 200 and body["status"] == "pending" and body["amount"] == "25.00"
    other = await api.new_tenant("other")
    headers = {"Authorization": f"Bearer {other}"}
    assert (await api.call("GET", f"/v1/purchases/{held['purchase_id']}", headers=headers))[0] == 404
    assert (await api.call("GET", "/v1/offers/o1", headers=headers))[0] == 404
    status, body = await api.call("POST", "/v1/offers/o1/purchase", headers=headers,
                                  json={"user_id": "u1", "quantity": 1})
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_openapi_covers_the_offer_routes(api: Api) -> None:
    _, doc = await api.call("GET", "/openapi.json", headers={})
    paths = doc["paths"]
    for path, method in [("/v1/offers", "post"), ("/v1/offers", "get"), ("/v1/offers/{offer_id}", "get"),
                         ("/v1/offers/{offer_id}", "patch"), ("/v1/offers/{offer_id}/purchase", "post"),
                         ("/v1/purchases/{purchase_id}", "get"), ("/v1/webhooks/stripe", "post")]:
        assert method in paths[path], (path, method)
    codes = paths["/v1/offers/{offer_id}/purchase"]["post"]["responses"]
    assert "RATE_LIMITED" in codes["429"]["x-error-codes"]
    assert "PAYMENT_PROVIDER_UNAVAILABLE" in codes["503"]["x-error-codes"]


def test_offer_script_headers_match_their_files() -> None:
    offer_scripts = {n: s for n, s in sources().items() if n.startswith("offer_")}
    assert len(offer_scripts) == 12  # offer_finish_batch folded into offer_purchase_batch; refunds: 3
    for name, src in offer_scripts.items():
        assert src.declared_keys == tuple(range(1, src.num_keys + 1)), name
        assert all(code in ERRORS for code in src.declared_errors), name
        assert "Errors:" in src.header and "Returns" in src.header, name


async def test_batcher_coalesces_and_keeps_per_item_results() -> None:
    seen: list[list[int]] = []

    async def flush(key: str, items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(i) if i % 10 == 3 else i * 2 for i in items]

    batcher: Batcher[str, int, int] = Batcher(flush, max_batch=8)
    results = await asyncio.gather(*(batcher.enqueue("k", i) for i in range(40)),
                                   return_exceptions=True)
    for i, r in enumerate(results):
        assert isinstance(r, ValueError) if i % 10 == 3 else r == i * 2
    assert seen[0] == [0] or len(seen[0]) <= 8
    assert all(len(b) <= 8 for b in seen) and sum(len(b) for b in seen) == 40
    assert len(seen) <= 7  # the first goes alone, the rest in full batches
    assert batcher.batches == len(seen) and not batcher._tasks and not batcher._queues


async def test_batcher_posts_ride_with_the_next_batch_and_close_waits_for_them(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[list[int]] = []
    fail = False

    async def flush(key: str, items: list[int]) -> list[int]:
        seen.append(items)
        await asyncio.sleep(0.01)
        if fail:
            raise ConnectionError("redis away")
        return [i for i in items]

    batcher: Batcher[str, int, int] = Batcher(flush, max_batch=4, max_in_flight=1)
    first = batcher.enqueue("k", 1)
    await asyncio.sleep(0)  # 1 is in flight
    later = batcher.enqueue("k", 2)
    await asyncio.sleep(0)
    batcher.post("k", 100)  # nobody waits; it goes ahead of 2, in the same next batch
    assert await first == 1 and await later == 2
    assert seen == [[1], [100, 2]]
    fail = True
    batcher.post("k", 101)
    batcher.post("k", 102)
    with caplog.at_level("WARNING", logger="dropgate.batcher"):
        await batcher.close(grace_s=5)  # waits for the queued posts instead of dropping them
    assert seen[-1] == [102, 101]
    assert "2 posted item(s) for 'k' not applied: redis away" in caplog.text
    assert not batcher._tasks and not batcher._queues


async def test_batcher_failure_reaches_every_item_and_bounds_its_queue() -> None:
    gate = asyncio.Event()

    async def flush(key: str, items: list[int]) -> list[int]:
        await gate.wait()
        raise ConnectionError("redis away")

    batcher: Batcher[str, int, int] = Batcher(flush, max_batch=4, max_queue=3)
    waiters = [batcher.enqueue("k", 0)]
    for _ in range(3):
        await asyncio.sleep(0)  # the first batch leaves the queue and waits in flush
    waiters += [batcher.enqueue("k", i) for i in range(1, 4)]
    await asyncio.sleep(0)  # three wait in the queue
    with pytest.raises(QueueFull):
        batcher.enqueue("k", 99)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
