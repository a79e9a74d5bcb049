"""Purchases through HTTP with the real stripe library against a local fake Stripe:
exact inventory under a crowd, idempotency keys, rate limits, refusals."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import msgspec
import pytest

from dropgate.engine.idempotency import key_digest
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import (
    create_offer,
    fake_stripe,
    inventory,
    pg_offer,
    purchase,
    stripe_settings,
    stripe_settings_fixture,
    webhook,
)

__all__ = ["fake_stripe"]


# A crowd of 2,000 sessions on a loaded machine (the embedded servers share its 2 cores)
# can keep the fake Stripe busy past a second; only the hang test times it out on purpose.
settings = stripe_settings_fixture(stripe_timeout_s=10.0)


@pytest.mark.cluster
async def test_crowd_never_oversells_and_postgres_agrees(
        api: Api, runtime: Runtime, persister: Persister, fake_stripe: FakeStripe) -> None:
    """2,000 concurrent purchases of 1-3 units against 500: sold + reserved never
    exceeds 500 at any point; confirming every hold ends with sold = units granted."""
    await create_offer(api, "hot", 500)
    offer_key = runtime.keys.tenant("acme").offer("hot")
    rng = random.Random(5)
    quantities = [rng.randint(1, 3) for _ in range(2000)]
    done = asyncio.Event()
    peaks: list[int] = []

    async def watch() -> None:
        while not done.is_set():
            total, reserved, sold = await runtime.redis.hmget(offer_key, "total", "reserved", "sold")
            peaks.append(int(reserved) + int(sold))
            assert int(reserved) + int(sold) <= int(total) == 500
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(purchase(api, "hot", f"u{i}", q)
                                     for i, q in enumerate(quantities)))
    done.set()
    await watcher
    granted = [(body, q) for (status, body), q in zip(results, quantities, strict=True)
               if status == 201]
    codes = Counter(body["code"] for status, body in results if status != 201)
    assert set(codes) <= {"INSUFFICIENT_INVENTORY"}, codes
    units = sum(q for _, q in granted)
    assert 498 <= units <= 500  # every unit went except what no 1-3 request could fill
    assert len(peaks) > 3 and max(peaks) <= 500
    assert await inventory(api, "hot") == {"total": 500, "available": 500 - units,
                                           "reserved": units, "sold": 0}
    # every granted hold has a Stripe session with the hold's expiry and our purchase id
    for body, _ in granted:
        session = fake_stripe.sessions[body["checkout_session_id"]]
        assert session["metadata"]["purchase_id"] == body["purchase_id"]
    # confirm them all (concurrently, as Stripe would deliver)
    events = [fake_stripe.event("checkout.session.completed", body["checkout_session_id"])
              for body, _ in granted]
    answers = await asyncio.gather(*(webhook(api, p, h) for p, h in events))
    assert all(s == 200 and b["outcome"] == "confirmed" for s, b in answers), answers[:3]
    assert await inventory(api, "hot") == {"total": 500, "available": 500 - units,
                                           "reserved": 0, "sold": units}
    await persister.drain()
    row = await pg_offer(runtime, "acme", "hot")
    assert row["sold"] == row["rows_sold"] == units
    assert row["reserved"] == row["rows_reserved"] == 0
    assert row["purchases"] == len(granted)
    assert await runtime.pool.fetchval("SELECT COUNT(*) FROM webhook_events") == len(granted)
    # status history: every purchase went pending -> paid
    history = await runtime.pool.fetch(
        "SELECT status, COUNT(*) AS n FROM offer_purchase_history GROUP BY status")
    assert {r["status"]: r["n"] for r in history} == {"pending": len(granted), "paid": len(granted)}


async def test_idempotent_replay_is_identical(api: Api) -> None:
    await create_offer(api, "o1", 10)
    first = await api.client.post("/v1/offers/o1/purchase", json={"user_id": "u1", "quantity": 2},
                                  headers={**api.service, "Idempotency-Key": "key-1"})
    second = await api.client.post("/v1/offers/o1/purchase", json={"user_id": "u1", "quantity": 2},
                                   headers={**api.service, "Idempotency-Key": "key-1"})
    assert first.status == second.status == 201
    assert await first.read() == await second.read()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (await inventory(api, "o1"))["reserved"] == 2  # one hold, not two


async def _keyed(api: Api, offer_id: str, user_id: str, key: str) -> tuple[int, bytes, bool]:
    """(status, body bytes, replayed?) of one keyed purchase of one unit."""
    response = await api.client.post(f"/v1/offers/{offer_id}/purchase", json={"user_id": user_id, "quantity": 1},
                                     headers={**api.service, "Idempotency-Key": key})
    return response.status, await response.read(), response.headers.get("Idempotent-Replayed") == "true"


@pytest.mark.cluster
async def test_a_keyed_crowd_twice_replays_every_201_from_its_purchase(
        api: Api, runtime: Runtime, persister: Persister, fake_stripe: FakeStripe) -> None:
    """300 keys, each sent twice side by side, all 600 at once, for 200 units: exactly 200
    keys hold a unit (a copy is a replay or told the first is still running, never a
    second hold). The same 600 again are all replays, byte for byte the first answers:
    each 201 rendered from its purchase record, none stored under its key (the key's
    record still names the purchase, with no body). Then PostgreSQL equals Redis."""
    await create_offer(api, "crowd", 200)
    sends = [(f"u{i}", f"key-{i}") for i in range(300) for _ in range(2)]
    first = await asyncio.gather(*(_keyed(api, "crowd", user, key) for user, key in sends))
    answers: dict[str, tuple[int, bytes]] = {}
    fresh: Counter[str] = Counter()
    for (_, key), (status, body, replayed) in zip(sends, first, strict=True):
        if status == 409 and b"IDEMPOTENCY_KEY_IN_USE" in body:
            continue  # the copy beside a first that had not attached its session yet
        assert status in (201, 409), (status, body)
        assert answers.setdefault(key, (status, body)) == (status, body)  # a copy answers the same bytes
        fresh[key] += not replayed
    assert len(answers) == 300 and set(fresh.values()) == {1}  # one first answer per key, the rest replays
    held = {key: body for key, (status, body) in answers.items() if status == 201}
    assert len(held) == 200
    assert all(b'"INSUFFICIENT_INVENTORY"' in body for status, body in answers.values() if status == 409)
    assert len(fake_stripe.sessions) == 200

    again = await asyncio.gather(*(_keyed(api, "crowd", user, key) for user, key in sends))
    assert all(answer == (*answers[key], True) for (_, key), answer in zip(sends, again, strict=True))
    assert await inventory(api, "crowd") == {"total": 200, "available": 0, "reserved": 200, "sold": 0}
    assert len(fake_stripe.sessions) == 200
    idem = runtime.keys.tenant("acme").offer_idempotency()
    for key, body in held.items():
        record = (await runtime.redis.hget(idem, f"acme:{key_digest(key)}")).decode()
        purchase_id = msgspec.json.decode(body)["purchase_id"]
        assert record.startswith("R ") and record.endswith(" " + purchase_id), record
    await persister.drain()
    row = await pg_offer(runtime, "acme", "crowd")
    assert row["reserved"] == row["rows_reserved"] == 200 and row["purchases"] == 200
    rows = await runtime.pool.fetch(
        "SELECT purchase_id FROM offer_purchases WHERE tenant_id = 'acme' AND offer_id = 'crowd'")
    assert {r["purchase_id"] for r in rows} == {msgspec.json.decode(b)["purchase_id"] for b in held.values()}


async def test_idempotent_refusal_is_replayed_too(api: Api) -> None:
    await create_offer(api, "o1", 1)
    status, body = await purchase(api, "o1", "u1", 2, key="too-many")
    assert (status, body["code"]) == (409, "INSUFFICIENT_INVENTORY")
    await api.call("PATCH", "/v1/offers/o1", json={"inventory_total": 5})
    again = await purchase(api, "o1", "u1", 2, key="too-many")
    assert again == (status, body)  # the first answer, although it would pass now


async def test_idempotency_key_reused_with_another_body_is_422(api: Api) -> None:
    await create_offer(api, "o1", 10)
    assert (await purchase(api, "o1", "u1", 1, key="k"))[0] == 201
    status, body = await purchase(api, "o1", "u1", 2, key="k")
    assert status == 422 and body["code"] == "IDEMPOTENCY_KEY_REUSED"
    await create_offer(api, "o2", 10)
    status, body = await purchase(api, "o2", "u1", 1, key="k")
    assert status == 422 and body["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_an_answer_lost_before_it_was_stored_is_recovered_not_bought_again(
        api: Api, runtime: Runtime, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 201 is stored after it is sent. A crash in between leaves the key running with
    its hold: a repeat is told 409 while the first might still be running, then gets
    the very same answer (the hold's checkout again, under Stripe's idempotency key),
    never a second hold or session."""
    await create_offer(api, "o1", 10)
    purchases = runtime.purchases
    real_post = purchases.batches.post
    monkeypatch.setattr(purchases.batches, "post", lambda key, item: None)  # the store is lost
    first = await api.client.post("/v1/offers/o1/purchase", json={"user_id": "u1", "quantity": 2},
                                  headers={**api.service, "Idempotency-Key": "lost"})
    assert first.status == 201
    monkeypatch.setattr(purchases.batches, "post", real_post)
    status, body = await purchase(api, "o1", "u1", 2, key="lost")
    assert (status, body["code"]) == (409, "IDEMPOTENCY_KEY_IN_USE")  # it may still be running
    monkeypatch.setattr(purchases, "_idem_stale_ms", 1)  # ... until it has been quiet that long
    await asyncio.sleep(0.01)
    recovered = await api.client.post("/v1/offers/o1/purchase", json={"user_id": "u1", "quantity": 2},
                                      headers={**api.service, "Idempotency-Key": "lost"})
    assert recovered.status == 201 and recovered.headers["Idempotent-Replayed"] == "true"
    assert await recovered.read() == await first.read()
    assert len(fake_stripe.sessions) == 1  # Stripe replayed the same session
    assert await inventory(api, "o1") == {"total": 10, "available": 8, "reserved": 2, "sold": 0}
    # now stored: a later repeat is a plain replay, even long after
    again = await api.client.post("/v1/offers/o1/purchase", json={"user_id": "u1", "quantity": 2},
                                  headers={**api.service, "Idempotency-Key": "lost"})
    assert again.status == 201 and await again.read() == await first.read()
    status, body = await purchase(api, "o1", "u1", 3, key="lost")
    assert (status, body["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")  # recovery checks the body too
    assert fake_stripe.calls == 2


async def test_a_key_whose_hold_a_provider_failure_released_starts_afresh_after_a_crash(
        api: Api, runtime: Runtime, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    """Provider failure: the hold is released, then the 503 is stored before it is sent.
    A crash between the two sent nothing, so after the quiet period the key buys anew."""
    await create_offer(api, "o1", 10)
    purchases = runtime.purchases
    fake_stripe.mode = "fail"

    async def crash(*args: object, **kw: object) -> None:
        raise ConnectionError("the process died here")

    monkeypatch.setattr(purchases, "_finish", crash)
    status, body = await purchase(api, "o1", "u1", 1, key="k")
    assert status == 503  # what a client of a crashed process sees: no answer of ours
    monkeypatch.undo()
    fake_stripe.mode = "ok"
    assert (await purchase(api, "o1", "u1", 1, key="k"))[1]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    monkeypatch.setattr(purchases, "_idem_stale_ms", 1)
    await asyncio.sleep(0.01)
    status, body = await purchase(api, "o1", "u1", 1, key="k")
    assert (status, body["status"]) == (201, "pending")
    assert await inventory(api, "o1") == {"total": 10, "available": 9, "reserved": 1, "sold": 0}
    assert len(fake_stripe.sessions) == 1


@pytest.mark.cluster
async def test_fifty_concurrent_requests_with_one_key_make_one_purchase(
        api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 100)
    results = await asyncio.gather(*(purchase(api, "o1", "u1", 1, key="same") for _ in range(50)))
    created = [b for s, b in results if s == 201]
    in_use = [b for s, b in results if s == 409]
    # the rest either replayed the one purchase or were told it is still running
    # (the user's rate limit answers first for requests past its burst: 429, nothing stored)
    assert {s for s, _ in results} <= {201, 409, 429}
    assert all(b["code"] == "IDEMPOTENCY_KEY_IN_USE" for b in in_use)
    assert len({b["purchase_id"] for b in created}) == 1
    assert (await inventory(api, "o1"))["reserved"] == 1
    assert len(fake_stripe.sessions) == 1


async def test_rate_limit_burst_gets_429_with_retry_after_then_recovers(
        api: Api, runtime: Runtime) -> None:
    await create_offer(api, "o1", 1000, max_per_order=1)
    burst = runtime.settings.rate_limit_burst
    responses = await asyncio.gather(*(api.client.post(
        "/v1/offers/o1/purchase", json={"user_id": "eager", "quantity": 1}, headers=api.service)
        for _ in range(burst + 10)))
    statuses = Counter(r.status for r in responses)
    assert statuses[201] >= burst and statuses[429] >= 8, statuses
    limited = [r for r in responses if r.status == 429]
    for r in limited:
        body = await r.json()
        assert body["code"] == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) == 1  # 5/s: the next request is due within a second
    # another user is not affected
    assert (await purchase(api, "o1", "calm", 1))[0] == 201
    await asyncio.sleep(1.0)
    assert (await purchase(api, "o1", "eager", 1))[0] == 201


async def test_tenant_concurrency_cap(make_settings: Callable[..., Settings], isolated: str,
                                      fake_stripe: FakeStripe) -> None:
    from aiohttp.test_utils import TestClient

    from dropgate.http.app import create_app
    from dropgate.runtime import open_runtime
    from tests.support.apiserver import ApiServer

    settings = stripe_settings(make_settings, fake_stripe, tenant_concurrency=3, stripe_timeout_s=1.0)
    async with open_runtime(settings, run_persister=False) as rt:
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            await create_offer(api, "o1", 100)
            fake_stripe.mode = "hang"  # purchases stay in flight until the provider times out
            results = await asyncio.gather(*(purchase(api, "o1", f"u{i}") for i in range(8)))
            statuses = Counter(s for s, _ in results)
            assert statuses == {429: 5, 503: 3}, statuses
            capped = [b for s, b in results if s == 429]
            assert all(b["details"]["scope"] == "tenant_concurrency" for b in capped)
        finally:
            await client.close()


@pytest.mark.parametrize(("patch", "code", "status"), [
    ({"active": False}, "OFFER_UNAVAILABLE", 409),
    ({"archived": True}, "OFFER_UNAVAILABLE", 409),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "OFFER_UNAVAILABLE", 409),
])
async def test_closed_offers_refuse(api: Api, patch: dict[str, object], code: str, status: int) -> None:
    await create_offer(api, "o1", 10)
    await api.call("PATCH", "/v1/offers/o1", json=patch)
    got_status, body = await purchase(api, "o1", "u1")
    assert (got_status, body["code"]) == (status, code)


async def test_refusals(api: Api) -> None:
    await create_offer(api, "o1", 2, max_per_order=2)
    status, body = await purchase(api, "o1", "u1", 3)
    assert (status, body["code"]) == (400, "QUANTITY_LIMIT")
    status, body = await purchase(api, "nope", "u1", 1)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    assert (await purchase(api, "o1", "u1", 2))[0] == 201
    status, body = await purchase(api, "o1", "u2", 1)
    assert (status, body["code"]) == (409, "INSUFFICIENT_INVENTORY")
    status, body = await api.call("POST", "/v1/offers/o1/purchase", json={"user_id": "u1", "qty": 1})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")


async def test_inactive_subscription_refuses(api: Api) -> None:
    await create_offer(api, "o1", 10)
    status, _ = await api.call("PUT", "/v1/tenants/acme/subscription", headers=api.admin,
                               json={"subscription_status": "suspended"})
    assert status == 200
    status, body = await purchase(api, "o1", "u1")
    assert (status, body["code"]) == (403, "SUBSCRIPTION_INACTIVE")
    assert body["details"]["subscription_status"] == "suspended"
    assert (await inventory(api, "o1"))["reserved"] == 0
