"""The tenant actor over HTTP: gated payments, four eyes, overdraw, orders, bookings,
backpressure, passivation, and the SQL rows behind them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.actors_flood import check_log_and_balances, flood_with_suspension


async def _pay(api: Api, amount: str, currency: str = "usd", ref: str = "r") -> tuple[int, Any]:
    return await api.call("POST", "/v1/payments",
                          json={"amount": amount, "currency": currency, "reference": ref})


@pytest.mark.cluster
async def test_payment_flood_with_a_suspension_in_the_middle(
    api: Api, runtime: Runtime, persister: Persister
) -> None:
    async with aiohttp.ClientSession() as side:  # the operator's own connection: not queued
        async def send(method: str, path: str, body: Any, admin: bool, i: int) -> tuple[int, Any]:
            if not admin:
                return await api.call(method, path, json=body)
            async with side.request(method, api.client.make_url(path), json=body,
                                    headers=api.admin) as response:
                return response.status, await response.json()

        succeeded = await flood_with_suspension(send, "acme")
    await check_log_and_balances(runtime, persister, "acme", succeeded)
    # reactivating the subscription lets payments through again
    status, _ = await api.call("PUT", "/v1/tenants/acme/subscription", headers=api.admin,
                               json={"subscription_status": "active"})
    assert status == 200
    status, body = await _pay(api, "1.00")
    assert status == 201, body


async def test_inactive_statuses_and_trials_by_redis_time(api: Api) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    future = datetime.now(UTC) + timedelta(days=3)
    await api.new_tenant("trial-over", subscription_status="trialing", trial_end=past.isoformat())
    await api.new_tenant("trial-on", subscription_status="trialing", trial_end=future.isoformat())
    await api.new_tenant("late", subscription_status="past_due")
    status, body = await api.call("POST", "/v1/payments", headers=api.as_admin_of("trial-over"),
                                  json={"amount": "5", "currency": "usd", "reference": "x"})
    assert status == 403, body
    assert body["code"] == "SUBSCRIPTION_INACTIVE"
    assert body["details"] == {"subscription_status": "trialing",
                               "trial_end_date": past.strftime("%Y-%m-%dT%H:%M:%SZ")}
    status, body = await api.call("POST", "/v1/bookings", headers=api.as_admin_of("late"),
                                  json={"resource_id": "r", "slot_start": "2031-01-01T10:00:00Z",
                                        "slot_end": "2031-01-01T11:00:00Z", "user_id": "u"})
    assert status == 403 and body["details"]["subscription_status"] == "past_due", body
    status, body = await api.call("POST", "/v1/payments", headers=api.as_admin_of("trial-on"),
                                  json={"amount": "5", "currency": "usd", "reference": "x"})
    assert status == 201, body
    # an admin key without X-Tenant-Id on a tenant route
    status, body = await api.call("POST", "/v1/payments", headers=api.admin,
                                  json={"amount": "5", "currency": "usd", "reference": "x"})
    assert status == 400 and body["code"] == "TENANT_REQUIRED", body


async def test_four_eyes(api: Api, persister: Persister, runtime: Runtime) -> None:
    assert (await _pay(api, "100.00"))[0] == 201
    status, w = await api.call("POST", "/v1/withdrawals",
                               json={"amount": "40.00", "currency": "usd", "initiated_by": "alice"})
    assert status == 201 and w["status"] == "pending", w
    wid = w["withdrawal_id"]
    # the same key, whatever the body says
    status, body = await api.call("POST", f"/v1/withdrawals/{wid}/approve", json={"approved_by": "bob"})
    assert status == 409 and body["code"] == "FOUR_EYES_REQUIRED", body
    status, body = await api.call("GET", f"/v1/withdrawals/{wid}")
    assert status == 200 and body["status"] == "pending"
    bob = await api.new_key("bob")
    status, body = await api.call("POST", f"/v1/withdrawals/{wid}/approve", json={"approved_by": "bob"},
                                  headers=bob)
    assert status == 200, body
    assert body["status"] == "completed" and body["balance"] == "60.00" and body["approved_by"] == "bob"
    status, body = await api.call("POST", f"/v1/withdrawals/{wid}/approve", json={"approved_by": "carol"},
                                  headers=bob)
    assert status == 409 and body["code"] == "CONFLICT", body
    status, body = await api.call("POST", "/v1/withdrawals/nope/approve", json={"approved_by": "bob"},
                                  headers=bob)
    assert status == 404 and body["code"] == "NOT_FOUND"
    await persister.drain()
    row = await runtime.pool.fetchrow(
        "SELECT status, initiated_by, approved_by, amount_minor FROM withdrawals WHERE withdrawal_id = $1", wid)
    assert dict(row) == {"status": "completed", "initiated_by": "alice", "approved_by": "bob",
                         "amount_minor": 4000}


@pytest.mark.cluster
async def test_concurrent_approvals_never_overdraw(
    api: Api, runtime: Runtime, persister: Persister
) -> None:
    assert (await _pay(api, "1000.00"))[0] == 201
    assert (await _pay(api, "5", currency="eur"))[0] == 201
    created = await asyncio.gather(*(
        api.call("POST", "/v1/withdrawals",
                 json={"amount": "10.00", "currency": "usd", "initiated_by": f"clerk{i}"})
        for i in range(300)))
    assert all(s == 201 for s, _ in created)
    boss = await api.new_key("boss")
    approvals = await asyncio.gather(*(
        api.call("POST", f"/v1/withdrawals/{w['withdrawal_id']}/approve", json={"approved_by": "boss"},
                 headers=boss)
        for _, w in created))
    codes = Counter(s if s == 200 else b["code"] for s, b in approvals)
    assert codes == {200: 100, "INSUFFICIENT_FUNDS": 200}, codes
    refusal = next(b for s, b in approvals if s != 200)
    assert refusal["details"]["balance"] == 0 and refusal["details"]["amount"] == 1000
    _, tenant = await api.call("GET", "/v1/tenants/acme", headers=api.admin)
    assert tenant["balance"] == {"eur": "5.00", "usd": "0.00"}
    await persister.drain()
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM withdrawals WHERE tenant_id = 'acme' AND status = 'completed'") == 100
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM withdrawals WHERE tenant_id = 'acme' AND status = 'pending'") == 200
    balances = {r["currency"]: r["balance_minor"] for r in await runtime.pool.fetch(
        "SELECT currency, balance_minor FROM tenant_balances_from_rows WHERE tenant_id = 'acme'")}
    assert balances == {"usd": 0, "eur": 500}
    kept = {r["currency"]: r["balance_minor"] for r in await runtime.pool.fetch(
        "SELECT currency, balance_minor FROM tenant_balances WHERE tenant_id = 'acme'")}
    assert kept == balances


async def test_slot_capacity_under_500_concurrent_bookings(
    api: Api, runtime: Runtime, persister: Persister
) -> None:
    slot = {"resource_id": "court-1", "slot_start": "2031-06-01T09:00:00Z",
            "slot_end": "2031-06-01T10:00:00Z"}
    answers = await asyncio.gather(*(
        api.call("POST", "/v1/bookings", json={**slot, "capacity": 20, "user_id": f"u{i}"})
        for i in range(500)))
    codes = Counter(s if s == 201 else b["code"] for s, b in answers)
    assert codes == {201: 20, "SLOT_FULL": 480}, codes
    assert sorted(b["booked"] for s, b in answers if s == 201) == list(range(1, 21))
    # another slot of the same resource is independent; a different capacity conflicts
    status, body = await api.call("POST", "/v1/bookings", json={
        **slot, "slot_start": "2031-06-01T10:00:00Z", "slot_end": "2031-06-01T11:00:00Z",
        "user_id": "u1"})
    assert status == 201 and body["capacity"] == 1, body
    status, body = await api.call("POST", "/v1/bookings", json={**slot, "capacity": 30, "user_id": "x"})
    assert status == 409 and body["code"] == "CONFLICT", body
    status, body = await api.call("POST", "/v1/bookings", json={
        **slot, "slot_end": "2031-06-01T08:00:00Z", "user_id": "x"})
    assert status == 400 and body["details"]["field"] == "slot_end"
    await persister.drain()
    users = {r["user_id"] for r in await runtime.pool.fetch(
        "SELECT user_id FROM bookings WHERE tenant_id = 'acme' AND resource_id = 'court-1' "
        "AND slot_start = '2031-06-01T09:00:00Z'")}
    assert users == {b["user_id"] for s, b in answers if s == 201}
    row = await runtime.pool.fetchrow(
        "SELECT capacity, booked FROM booking_slots WHERE tenant_id = 'acme' AND resource_id = 'court-1' "
        "AND slot_start = '2031-06-01T09:00:00Z'")
    assert dict(row) == {"capacity": 20, "booked": 20}


async def test_orders_once_per_id(api: Api, runtime: Runtime, persister: Persister) -> None:
    body = {"order_id": "o-1", "items": [{"sku": "tee", "quantity": 2}], "total": "30", "currency": "eur"}
    answers = await asyncio.gather(*(api.call("POST", "/v1/orders", json=body) for _ in range(200)))
    codes = Counter(s if s == 201 else b["code"] for s, b in answers)
    assert codes == {201: 1, "ALREADY_EXISTS": 199}, codes
    status, order = await api.call("GET", "/v1/orders/o-1")
    assert status == 200 and order["total"] == "30.00" and order["items"] == body["items"]
    status, generated = await api.call("POST", "/v1/orders", json={**body, "order_id": None})
    assert status == 201 and generated["order_id"].startswith("ord_")
    status, bad = await api.call("POST", "/v1/orders", json={**body, "items": []})
    assert status == 400 and bad["code"] == "VALIDATION_ERROR"
    await persister.drain()
    rows = await runtime.pool.fetch("SELECT order_id, total_minor, items FROM orders WHERE tenant_id = 'acme'")
    assert sorted(r["order_id"] for r in rows) == sorted(["o-1", generated["order_id"]])
    assert all(r["total_minor"] == 3000 for r in rows)


async def test_full_mailbox_answers_503_tenant_busy(api: Api, runtime: Runtime) -> None:
    system = runtime.actors
    gate = asyncio.Event()

    async def blocked(actor: object) -> None:
        await gate.wait()

    first = asyncio.create_task(system.ask("acme", blocked))
    await asyncio.sleep(0.01)
    fillers = [asyncio.create_task(system.ask("acme", blocked)) for _ in range(system.mailbox_size)]
    await asyncio.sleep(0)
    response = await api.client.post("/v1/payments", headers=api.service,
                                     json={"amount": "1", "currency": "usd", "reference": "x"})
    body = await response.json()
    assert response.status == 503 and body["code"] == "TENANT_BUSY", body
    assert response.headers["Retry-After"] == "1"
    # another tenant is served meanwhile
    await api.new_tenant("other")
    status, _ = await api.call("POST", "/v1/payments", headers=api.as_admin_of("other"),
                               json={"amount": "1", "currency": "usd", "reference": "x"})
    assert status == 201
    status, metrics = await api.call("GET", "/metrics")
    assert f'dropgate_actor_mailbox_depth_max{{system="tenant"}} {float(system.mailbox_size)}' in metrics
    assert 'dropgate_actor_rejected_total{system="tenant"} 1.0' in metrics
    gate.set()
    await asyncio.gather(first, *fillers)
    status, _ = await _pay(api, "1")
    assert status == 201


async def test_passivation_and_reactivation_keep_state(api: Api, runtime: Runtime) -> None:
    system = runtime.actors
    assert (await _pay(api, "100.00"))[0] == 201
    status, w = await api.call("POST", "/v1/withdrawals",
                               json={"amount": "30.00", "currency": "usd", "initiated_by": "alice"})
    assert status == 201
    actor = system.actor("acme")
    assert actor is not None and actor.epoch is not None
    first_epoch = actor.epoch
    lease_key = runtime.keys.tenant("acme").actor_lease()
    assert await runtime.redis.hexists(lease_key, f"e:{first_epoch}")

    assert await system.passivate_idle() == 1
    assert not system.is_active("acme") and actor.epoch is None
    assert not await runtime.redis.hexists(lease_key, f"e:{first_epoch}")  # lease released

    status, body = await api.call("POST", f"/v1/withdrawals/{w['withdrawal_id']}/approve",
                                  json={"approved_by": "bob"}, headers=await api.new_key("bob"))
    assert status == 200 and body["balance"] == "70.00", body
    again = system.actor("acme")
    assert again is not None and again is not actor and again.epoch == first_epoch + 1
    assert system.stats.activations == 2 and system.stats.passivations == 1


async def test_a_failing_message_does_not_kill_the_actor(api: Api, runtime: Runtime) -> None:
    system = runtime.actors
    assert (await _pay(api, "1.00"))[0] == 201
    actor = system.actor("acme")

    async def broken(a: object) -> None:
        raise RuntimeError("a bug in one message")

    answers = await asyncio.gather(
        system.ask("acme", broken),
        api.call("POST", "/v1/withdrawals/missing/approve", json={"approved_by": "bob"}),
        _pay(api, "2.00"),
        return_exceptions=True,
    )
    assert isinstance(answers[0], RuntimeError)
    assert answers[1][0] == 404  # type: ignore[index]
    assert answers[2][0] == 201 and answers[2][1]["balance"] == "3.00"  # type: ignore[index]
    assert system.actor("acme") is actor and system.stats.failed_turns == 2
    raw = await runtime.redis.hget(runtime.keys.tenant("acme").tenant(), "bal:usd")
    assert raw is not None and int(text(raw)) == 300


async def test_operations_appear_in_openapi(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200
    paths = doc["paths"]
    for path in ("/v1/payments", "/v1/withdrawals", "/v1/withdrawals/{withdrawal_id}/approve",
                 "/v1/orders", "/v1/bookings"):
        assert "post" in paths[path], path
    approve = paths["/v1/withdrawals/{withdrawal_id}/approve"]["post"]
    assert {"200", "403", "404", "409", "503"} <= set(approve["responses"])
