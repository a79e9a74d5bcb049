"""Lists (v1.1): pages, cursors, filters, read-your-writes, no repeats or skips."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dropgate.http.routes import lists as list_routes
from dropgate.persistence.persister import Persister
from tests.conftest import Api


async def walk(api: Api, path: str, *, limit: int, headers: dict[str, str] | None = None,
               **params: str) -> list[dict[str, Any]]:
    """Every item of a list, page by page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        q = {"limit": str(limit), **params, **({"cursor": cursor} if cursor else {})}
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        status, page = await api.call("GET", f"{path}?{qs}", headers=headers)
        assert status == 200, page
        assert set(page) == {"data", "has_more", "next_cursor"}
        assert len(page["data"]) <= limit
        items += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return items
        cursor = page["next_cursor"]


@contextlib.asynccontextmanager
async def running(persister: Persister) -> AsyncIterator[None]:
    task = asyncio.create_task(persister.run())
    try:
        yield
    finally:
        await persister.close()
        await asyncio.wait_for(task, timeout=30)


async def test_invites_list_pages_newest_first_with_filters(api: Api, persister: Persister) -> None:
    for i in range(7):
        status, _ = await api.call("POST", "/v1/invites",
                                   json={"code": f"INV{i}", "max_uses": 5, "active": i % 2 == 0})
        assert status == 201
    await api.call("POST", "/v1/invites/INV2/redeem", json={"user_id": "u1"})
    await api.call("POST", "/v1/invites/INV2/redeem", json={"user_id": "u2"})
    await persister.drain()
    items = await walk(api, "/v1/invites", limit=3)
    assert [i["code"] for i in items] == [f"INV{i}" for i in reversed(range(7))]
    inv2 = next(i for i in items if i["code"] == "INV2")
    assert inv2["used_count"] == 2 and inv2["last_used_at"] is not None
    active = await walk(api, "/v1/invites", limit=2, active="true")
    assert [i["code"] for i in active] == ["INV6", "INV4", "INV2", "INV0"]
    uses = await walk(api, "/v1/invites/INV2/uses", limit=1)
    assert sorted(u["user_id"] for u in uses) == ["u1", "u2"]
    # another tenant sees none of them
    other = await api.new_tenant("other")
    assert await walk(api, "/v1/invites", limit=10,
                      headers={"Authorization": f"Bearer {other}"}) == []


async def test_bad_limit_filter_and_tampered_cursor_are_400(api: Api, persister: Persister) -> None:
    for i in range(3):
        await api.call("POST", "/v1/invites", json={"code": f"C{i}", "max_uses": 1})
    await persister.drain()
    # limit=²: a digit to str.isdigit(), not to int() (make fuzz found it a 500)
    for q in ("limit=0", "limit=1001", "limit=x", "limit=%C2%B2", "limit=%EF%BC%95", "active=maybe", "colour=red",
              "consistent=yes", "cursor=abc", "cursor=", "cursor=..."):
        status, body = await api.call("GET", f"/v1/invites?{q}")
        if q == "cursor=":
            assert status == 200, body  # an empty cursor is the first page
            continue
        assert status == 400, (q, body)
        assert body["code"] == "VALIDATION_ERROR" and "field" in body["details"], body
    _, page = await api.call("GET", "/v1/invites?limit=1")
    cursor = page["next_cursor"]
    body_part, _, mac = cursor.partition(".")
    payload = base64.urlsafe_b64decode(body_part + "=" * (-len(body_part) % 4))
    forged = base64.urlsafe_b64encode(payload.replace(b'"C2"', b'"C9"')).rstrip(b"=").decode()
    status, body = await api.call("GET", f"/v1/invites?cursor={forged}.{mac}")
    assert status == 400 and body["details"]["field"] == "cursor", body
    # a cursor of one list is refused by another
    status, body = await api.call("GET", f"/v1/promos?cursor={cursor}")
    assert status == 400 and body["details"]["field"] == "cursor", body
    status, body = await api.call("GET", f"/v1/invites?cursor={cursor}")
    assert status == 200 and [i["code"] for i in body["data"]] == ["C1", "C0"]


async def test_consistent_true_reads_a_write_made_just_before(api: Api, persister: Persister) -> None:
    async with running(persister):
        for i in range(20):
            status, _ = await api.call("POST", "/v1/invites", json={"code": f"RW{i}", "max_uses": 1})
            assert status == 201
            status, page = await api.call("GET", "/v1/invites?limit=1&consistent=true")
            assert status == 200 and page["data"][0]["code"] == f"RW{i}", page


async def test_consistent_true_without_a_persister_is_503(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_routes, "CONSISTENT_TIMEOUT_S", 0.3)
    await api.call("POST", "/v1/invites", json={"code": "LAG", "max_uses": 1})
    status, body = await api.call("GET", "/v1/invites?consistent=true")
    assert status == 503 and body["code"] == "PERSISTENCE_LAGGING", body
    status, body = await api.call("GET", "/v1/invites")
    assert status == 200 and body["data"] == []  # not persisted yet: lists trail


async def test_pages_never_repeat_or_skip_under_concurrent_inserts(
        api: Api, persister: Persister) -> None:
    for i in range(150):
        await api.call("POST", "/v1/invites", json={"code": f"OLD{i:03d}", "max_uses": 1})
    await persister.drain()
    stop = asyncio.Event()

    async def writer() -> int:
        n = 0
        while not stop.is_set():
            await api.call("POST", "/v1/invites", json={"code": f"NEW{n:04d}", "max_uses": 1})
            n += 1
            if n % 10 == 0:
                await persister.run_once()
        return n

    async def reader() -> list[str]:
        try:
            return [i["code"] for i in await walk(api, "/v1/invites", limit=7)]
        finally:
            stop.set()

    writers = [asyncio.create_task(writer()) for _ in range(3)]
    seen = await reader()
    await asyncio.gather(*writers)
    assert len(seen) == len(set(seen)), "a page repeated an item"
    assert {c for c in seen if c.startswith("OLD")} == {f"OLD{i:03d}" for i in range(150)}


async def test_admin_lists_tenants_and_keys_without_secrets(api: Api, persister: Persister) -> None:
    await api.new_tenant("beta", subscription_status="past_due")
    await persister.drain()
    tenants = await walk(api, "/v1/tenants", limit=1, headers=api.admin)
    assert [t["tenant_id"] for t in tenants][:2] == ["beta", "acme"]
    past_due = await walk(api, "/v1/tenants", limit=5, headers=api.admin,
                          subscription_status="past_due")
    assert [t["tenant_id"] for t in past_due] == ["beta"]
    keys = await walk(api, "/v1/keys", limit=1, headers=api.admin)
    assert {k["tenant_id"] for k in keys} >= {"acme", "beta"}
    assert all("key" not in k and "secret_sha256" not in k for k in keys)
    own = await walk(api, "/v1/keys", limit=5)  # a service key: its own tenant's only
    assert own and {k["tenant_id"] for k in own} == {"acme"}
    status, _ = await api.call("GET", "/v1/keys?tenant_id=beta")
    assert status == 404
    status, _ = await api.call("GET", "/v1/tenants")
    assert status == 403


async def test_ledger_promo_offer_and_purchase_lists(api: Api, persister: Persister) -> None:
    assert (await api.call("POST", "/v1/payments",
                           json={"amount": "50", "currency": "usd", "reference": "r1"}))[0] == 201
    status, w = await api.call("POST", "/v1/withdrawals",
                               json={"amount": "5", "currency": "usd", "initiated_by": "ann"})
    assert status == 201, w
    status, o = await api.call("POST", "/v1/orders", json={
        "items": [{"sku": "A", "quantity": 2}], "total": "9.50", "currency": "usd"})
    assert status == 201, o
    status, b = await api.call("POST", "/v1/bookings", json={
        "resource_id": "room1", "slot_start": "2030-01-01T10:00:00Z",
        "slot_end": "2030-01-01T11:00:00Z", "user_id": "u1", "capacity": 3})
    assert status == 201, b
    status, _ = await api.call("POST", "/v1/promos", json={
        "code": "P10", "bonus": {"kind": "percent", "percent": "10"}, "currency": "usd"})
    assert status == 201
    status, use = await api.call("POST", "/v1/promos/P10/redeem",
                                 json={"customer_id": "c1", "base_amount": "20"})
    assert status == 201, use
    status, offer = await api.call("POST", "/v1/offers", json={
        "offer_id": "o1", "event_id": "e1", "name": "Seat", "price": "12.50", "currency": "usd",
        "inventory_total": 10})
    assert status == 201, offer
    response = await api.client.post("/v1/offers/o1/purchase", json={"user_id": "u9", "quantity": 2},
                                     headers={**api.service, "Idempotency-Key": "k-list-1"})
    purchase = await response.json()
    assert response.status == 201, purchase
    await persister.drain()
    _, page = await api.call("GET", "/v1/payments")
    assert [(p["amount"], p["reference"]) for p in page["data"]] == [("50.00", "r1")]
    _, page = await api.call("GET", "/v1/withdrawals?status=pending")
    assert [x["withdrawal_id"] for x in page["data"]] == [w["withdrawal_id"]]
    _, page = await api.call("GET", "/v1/orders")
    assert page["data"][0]["items"] == [{"sku": "A", "quantity": 2}] and page["data"][0]["total"] == "9.50"
    _, page = await api.call("GET", "/v1/bookings?resource_id=room1")
    assert page["data"][0]["capacity"] == 3 and page["data"][0]["booked"] == 1
    _, page = await api.call("GET", "/v1/promos?active=true")
    assert page["data"][0]["bonus"] == {"kind": "percent", "percent": "10"}
    assert page["data"][0]["times_used"] == 1
    _, page = await api.call("GET", "/v1/promos/P10/uses?customer_id=c1")
    assert [(u["bonus_amount"], u["total_amount"]) for u in page["data"]] == [("2.00", "22.00")]
    _, page = await api.call("GET", "/v1/purchases?offer_id=o1&status=pending")
    assert [(p["purchase_id"], p["quantity"], p["amount"]) for p in page["data"]] == [
        (purchase["purchase_id"], 2, "25.00")]
    _, page = await api.call("GET", "/v1/purchases?user_id=nobody")
    assert page["data"] == []
