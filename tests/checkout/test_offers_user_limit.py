"""Per-buyer caps: ``max_per_user`` counts the units a user holds plus owns, over all
its purchases of the offer, inside the purchase script, and every script that moves
units keeps that count exact (cancels, expiries, refunds)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.offers import create_offer, inventory, purchase


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(rate_limit_burst=1000, rate_limit_per_s=1000.0, tenant_concurrency=100_000)


async def _users(runtime: Runtime, offer_id: str) -> dict[str, int]:
    raw = await runtime.redis.hgetall(runtime.keys.tenant("acme").offer_users(offer_id))
    return {k.decode(): int(v) for k, v in raw.items()}


async def test_the_cap_counts_held_and_owned_units(api: Api, runtime: Runtime, persister: Persister) -> None:
    offer = await create_offer(api, "o1", 20, max_per_user=3)
    assert offer["max_per_user"] == 3
    status, first = await purchase(api, "o1", "u1", 2)
    assert status == 201, first
    status, body = await purchase(api, "o1", "u1", 2)
    assert (status, body["code"]) == (409, "USER_LIMIT"), body
    assert body["details"] == {"user_id": "u1", "max_per_user": 3, "requested": 2, "held_or_owned": 2}
    assert (await inventory(api, "o1"))["reserved"] == 2  # nothing held by the refusal
    status, paid = await purchase(api, "o1", "u1", 1)
    assert status == 201
    complete = await api.call("POST", f"/v1/sandbox/checkout/{paid['checkout_session_id']}/complete")
    assert complete[1]["webhook_response"]["outcome"] == "confirmed"
    assert (await purchase(api, "o1", "u1", 1))[1]["code"] == "USER_LIMIT"  # 2 held + 1 owned
    assert (await purchase(api, "o1", "u2", 3))[0] == 201  # another user has its own count
    # a cancel gives the held units back to the user's allowance; a full refund the owned one
    assert (await api.call("POST", f"/v1/purchases/{first['purchase_id']}/cancel"))[0] == 200
    assert await _users(runtime, "o1") == {"u1": 1, "u2": 3}
    status, body = await api.call("POST", f"/v1/purchases/{paid['purchase_id']}/refund", json={})
    assert (status, body["status"]) == (200, "refunded"), body
    assert await _users(runtime, "o1") == {"u2": 3}
    assert (await purchase(api, "o1", "u1", 3))[0] == 201
    # PATCH lowers, raises or removes the cap (new purchases only)
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"max_per_user": 4})
    assert (status, body["max_per_user"]) == (200, 4)
    assert (await purchase(api, "o1", "u1", 1))[0] == 201
    assert (await purchase(api, "o1", "u1", 1))[1]["code"] == "USER_LIMIT"
    status, body = await api.call("PATCH", "/v1/offers/o1", json={"max_per_user": None})
    assert (status, body["max_per_user"]) == (200, None)
    assert (await purchase(api, "o1", "u1", 3))[0] == 201
    await persister.drain()
    assert await runtime.pool.fetchval("SELECT max_per_user FROM offers WHERE offer_id = 'o1'") is None
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_bad_caps_and_urls_are_refused(api: Api) -> None:
    for bad in ({"max_per_user": 0}, {"max_per_user": "3"}, {"success_url": "/relative"},
                {"cancel_url": "ftp://x.test/"}, {"success_url": "https://"}):
        status, body = await api.call("POST", "/v1/offers", json={
            "offer_id": "bad", "event_id": "e", "name": "n", "price": "1.00", "currency": "usd",
            "inventory_total": 1, **bad})
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), (bad, body)
    offer = await create_offer(api, "ok", 1, success_url="https://shop.test/done?p={PURCHASE_ID}",
                               cancel_url="http://shop.test/cancel")
    assert (offer["success_url"], offer["cancel_url"]) == ("https://shop.test/done?p={PURCHASE_ID}",
                                                           "http://shop.test/cancel")
    status, body = await api.call("PATCH", "/v1/offers/ok", json={"success_url": None})
    assert (status, body["success_url"], body["cancel_url"]) == (200, None, "http://shop.test/cancel")


async def test_two_hundred_buyers_racing_twenty_purchases_each_never_pass_the_cap(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    """200 buyers each send 20 purchases of one unit at once, for a cap of 3 and 500
    units: nobody ends above 3, nothing is oversold, every unit goes, and PostgreSQL,
    the purchase records and the per-user counts agree."""
    await create_offer(api, "drop", 500, max_per_user=3)
    answers = await asyncio.gather(*(purchase(api, "drop", f"b{b}", 1) for _ in range(20) for b in range(200)))
    codes = Counter(a[0] if a[0] == 201 else a[1]["code"] for a in answers)
    assert set(codes) <= {201, "USER_LIMIT", "INSUFFICIENT_INVENTORY"}, codes
    assert codes[201] == 500, codes  # 600 wanted, 500 there: sold out exactly
    tk = runtime.keys.tenant("acme")
    per_user: dict[str, int] = defaultdict(int)
    for raw in (await runtime.redis.hgetall(tk.purchases())).values():
        p = json.loads(raw)
        per_user[p["user_id"]] += p["quantity"]
    assert max(per_user.values()) == 3 and sum(per_user.values()) == 500
    assert await _users(runtime, "drop") == dict(per_user)
    assert await inventory(api, "drop") == {"total": 500, "available": 0, "reserved": 500, "sold": 0}
    await persister.drain()
    rows = {r["user_id"]: r["n"] for r in await runtime.pool.fetch(
        "SELECT user_id, sum(quantity) AS n FROM offer_purchases WHERE offer_id = 'drop' GROUP BY user_id")}
    assert rows == dict(per_user)
    assert await runtime.pool.fetchval("SELECT reserved FROM offers WHERE offer_id = 'drop'") == 500
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_restore_rebuilds_the_per_user_counts(api: Api, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 10, max_per_user=2)
    for user in ("a", "a", "b"):
        assert (await purchase(api, "o1", user, 1))[0] == 201
    await persister.drain()
    users_key = runtime.keys.tenant("acme").offer_users("o1")
    await runtime.redis.hset(users_key, "a", 0)  # hand-made drift
    report = await reconcile(runtime, wait_s=0)
    assert {(d.entity, d.field) for d in report.drifts} == {("offer:acme:o1", "users")}, report.drifts
    assert (await reconcile(runtime, repair=True, wait_s=0)).exit_code == 0
    assert await _users(runtime, "o1") == {"a": 2, "b": 1}
    assert (await purchase(api, "o1", "a", 1))[1]["code"] == "USER_LIMIT"


async def test_the_tenants_urls_serve_offers_without_their_own(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    path = "/v1/tenants/acme/checkout"
    status, body = await api.call("PUT", path, headers=api.service, json={"success_url": "https://t.test/ok"})
    assert (status, body["code"]) == (403, "FORBIDDEN")
    status, body = await api.call("PUT", path, headers=api.admin, json={"success_url": "nope"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert (await api.call("PUT", "/v1/tenants/ghost/checkout", headers=api.admin, json={}))[0] == 404
    status, body = await api.call("PUT", path, headers=api.admin, json={
        "success_url": "https://t.test/ok?p={PURCHASE_ID}", "cancel_url": "https://t.test/back"})
    assert status == 200 and body == {"tenant_id": "acme", "success_url": "https://t.test/ok?p={PURCHASE_ID}",
                                      "cancel_url": "https://t.test/back"}, body
    await create_offer(api, "plain", 5)
    await create_offer(api, "own", 5, cancel_url="https://o.test/cart")
    held = [await runtime.purchases.purchase("acme", o, user_id="u1", quantity=1, idempotency_key=None)
            for o in ("plain", "own")]
    assert all(h.status == 201 for h in held)
    # what the purchase script answers the checkout: the offer's URL, else the tenant's
    provider: Any = runtime.purchases.provider
    seen: list[Any] = []
    original = provider.create_checkout

    async def spy(request: Any) -> Any:
        seen.append(request)
        return await original(request)

    provider.create_checkout = spy
    try:
        for o in ("plain", "own"):
            assert (await runtime.purchases.purchase("acme", o, user_id="u2", quantity=1,
                                                     idempotency_key=None)).status == 201
    finally:
        provider.create_checkout = original
    plain, own = seen
    assert plain.success_url == f"https://t.test/ok?p={plain.purchase_id}"
    assert plain.cancel_url == "https://t.test/back"
    assert (own.success_url, own.cancel_url) == (f"https://t.test/ok?p={own.purchase_id}", "https://o.test/cart")
    # null clears: dropgate's own pages again
    status, body = await api.call("PUT", path, headers=api.admin, json={"cancel_url": None})
    assert (status, body["success_url"], body["cancel_url"]) == (200, None, None)
    await persister.drain()
    row = await runtime.pool.fetchrow("SELECT success_url, cancel_url, checkout_version FROM tenants "
                                      "WHERE tenant_id = 'acme'")
    assert tuple(row) == (None, None, 2)
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
