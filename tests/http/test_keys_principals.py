"""Principals and scopes (#16): named keys, scopes per route, four-eyes by name, reject,
the own tenant, subscription history, order status and booking cancels, cascade."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.persistence.test_reconcile import _drained


def _bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


async def _key(api: Api, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
    return await api.call("POST", "/v1/keys", headers=headers, json=body)


async def test_scopes_are_enforced_per_route(api: Api) -> None:
    reader = await api.new_key("reader", scopes=["read"])
    status, body = await api.call("POST", "/v1/payments", headers=reader,
                                  json={"amount": "1", "currency": "usd", "reference": "r"})
    assert (status, body["code"], body["details"]) == (403, "FORBIDDEN", {"scope": "payments:write"})
    status, body = await api.call("GET", "/v1/tenant", headers=reader)
    assert status == 200 and body["tenant_id"] == "acme", body
    payer = await api.new_key("payer", scopes=["payments:write"])
    status, _ = await api.call("POST", "/v1/payments", headers=payer,
                               json={"amount": "1", "currency": "usd", "reference": "r"})
    assert status == 201
    status, body = await api.call("GET", "/v1/tenant", headers=payer)
    assert (status, body["details"]) == (403, {"scope": "read"})
    status, body = await api.call("POST", "/v1/withdrawals", headers=payer,
                                  json={"amount": "1", "currency": "usd"})
    assert (status, body["details"]) == (403, {"scope": "withdrawals:initiate"})
    for path, scope in (("/v1/invites", "invites:write"), ("/v1/orders", "orders:write"),
                        ("/v1/offers/x/purchase", "purchases:write"), ("/v1/campaigns/c/assign", "codes:write")):
        status, body = await api.call("POST", path, headers=reader, json={})
        assert (status, body["details"]) == (403, {"scope": scope}), (path, body)
    # keys made before scopes existed (no scopes field) keep every scope: the fixture's key
    status, _ = await api.call("POST", "/v1/payments", json={"amount": "1", "currency": "usd", "reference": "r"})
    assert status == 201


async def test_key_names_scopes_and_minting(api: Api) -> None:
    status, body = await _key(api, api.admin, role="service", tenant_id="acme")
    assert (status, body["details"]) == (400, {"field": "name"})
    status, body = await _key(api, api.admin, role="service", tenant_id="acme", name="x", scopes=["nope"])
    assert status == 400 and body["code"] == "VALIDATION_ERROR"
    status, narrow = await _key(api, api.admin, role="admin", name="ops", scopes=["read", "orders:write"])
    assert status == 201 and narrow["scopes"] == ["orders:write", "read"] and narrow["created_by"] is None
    # never more than the minter holds
    status, body = await _key(api, _bearer(narrow), role="service", tenant_id="acme", name="y")
    assert (status, body["code"], body["details"]["scope"]) == (403, "FORBIDDEN", "payments:write")
    status, child = await _key(api, _bearer(narrow), role="service", tenant_id="acme", name="y", scopes=["read"])
    assert status == 201 and child["created_by"] == narrow["key_id"], child


async def test_cascade_revokes_the_minted_tree_and_a_revoked_key_cannot_mint(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    _, a = await _key(api, api.admin, role="admin", name="a")
    _, b = await _key(api, _bearer(a), role="admin", name="b")
    _, c = await _key(api, _bearer(b), role="service", tenant_id="acme", name="c")
    _, d = await _key(api, _bearer(a), role="service", tenant_id="acme", name="d")
    _, lone = await _key(api, _bearer(b), role="service", tenant_id="acme", name="lone")
    # without cascade: only the key itself
    status, _ = await api.call("DELETE", f"/v1/keys/{lone['key_id']}", headers=api.admin)
    assert status == 204
    status, _ = await api.call("GET", "/v1/tenant", headers=_bearer(lone))
    assert status == 401
    status, body = await api.call("DELETE", f"/v1/keys/{a['key_id']}?cascade=maybe", headers=api.admin)
    assert status == 400
    status, _ = await api.call("DELETE", f"/v1/keys/{a['key_id']}?cascade=true", headers=api.admin)
    assert status == 204
    for key in (a, b, c, d):
        status, body = await api.call("GET", "/v1/tenant", headers={**_bearer(key), "X-Tenant-Id": "acme"})
        assert (status, body["code"]) == (401, "UNAUTHORIZED"), key["name"]
    # a revoked key cannot mint
    status, body = await _key(api, _bearer(a), role="admin", name="z")
    assert status == 401
    # and the engine refuses a mint whose minter is gone, even past authentication
    from dropgate.errors import Unauthorized
    try:
        await runtime.api_keys.create(role="admin", tenant_id=None, name="late", created_by=a["key_id"])
    except Unauthorized:
        pass
    else:
        raise AssertionError("a revoked key minted")
    await _drained(persister)
    rows = {r["key_id"]: (r["name"], r["created_by"], r["revoked_at"] is not None) for r in await runtime.pool.fetch(
        "SELECT key_id, name, created_by, revoked_at FROM api_keys WHERE name IS NOT NULL")}
    assert rows[c["key_id"]] == ("c", b["key_id"], True)
    assert rows[b["key_id"]] == ("b", a["key_id"], True)
    assert rows[a["key_id"]] == ("a", None, True)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


async def _funded_withdrawal(api: Api, initiator: dict[str, str], amount: str = "10") -> str:
    status, _ = await api.call("POST", "/v1/payments", json={"amount": "100", "currency": "usd", "reference": "f"})
    assert status == 201
    status, w = await api.call("POST", "/v1/withdrawals", headers=initiator,
                               json={"amount": amount, "currency": "usd", "initiated_by": "someone-else"})
    assert status == 201, w
    return str(w["withdrawal_id"])


async def test_two_keys_with_one_name_cannot_complete_four_eyes(api: Api) -> None:
    alice = await api.new_key("Alice")
    alice_again = await api.new_key("aLICE")
    wid = await _funded_withdrawal(api, alice)
    for body in ({"approved_by": "bob"}, {}):
        status, out = await api.call("POST", f"/v1/withdrawals/{wid}/approve", headers=alice_again, json=body)
        assert (status, out["code"]) == (409, "FOUR_EYES_REQUIRED"), out
    status, out = await api.call("POST", f"/v1/withdrawals/{wid}/reject", headers=alice_again, json={})
    assert (status, out["code"]) == (409, "FOUR_EYES_REQUIRED"), out
    status, out = await api.call("POST", f"/v1/withdrawals/{wid}/approve", headers=alice, json={})
    assert status == 409
    bob = await api.new_key("bob", scopes=["withdrawals:approve", "read"])
    status, out = await api.call("POST", f"/v1/withdrawals/{wid}/approve", headers=bob, json={})
    assert status == 200 and out["status"] == "completed" and out["approved_by"] == "bob", out
    assert out["initiated_by"] == "someone-else" and out["initiated_by_key"] != out["approved_by_key"]


async def test_hundreds_of_approvals_and_rejects_exactly_one_wins(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    alice, bob, carol = await api.new_key("alice"), await api.new_key("bob"), await api.new_key("carol")
    wids = [await _funded_withdrawal(api, alice) for _ in range(3)]
    for wid in wids:
        answers = await asyncio.gather(*(
            api.call("POST", f"/v1/withdrawals/{wid}/{'approve' if i % 2 else 'reject'}",
                     headers=bob if i % 3 else carol, json={})
            for i in range(200)))
        codes = Counter(s if s == 200 else b["code"] for s, b in answers)
        assert codes[200] == 1 and codes["CONFLICT"] == 199, codes
    await _drained(persister)
    rows = await runtime.pool.fetch(
        "SELECT withdrawal_id, status, initiator, approver FROM withdrawals WHERE withdrawal_id = ANY($1)", wids)
    for r in rows:
        live = await runtime.ledger.withdrawal("acme", r["withdrawal_id"])
        assert (r["status"], r["initiator"], r["approver"]) == (live.status, live.initiator, live.approver)
        assert r["status"] in ("completed", "rejected") and r["initiator"] == "name:alice"
    balance = await runtime.pool.fetchval(
        "SELECT balance_minor FROM tenant_balances WHERE tenant_id = 'acme' AND currency = 'usd'")
    completed = sum(1 for r in rows if r["status"] == "completed")
    assert balance == 3 * 10000 - completed * 1000
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


async def test_own_tenant_and_subscription_history(api: Api, runtime: Runtime, persister: Persister) -> None:
    status, mine = await api.call("GET", "/v1/tenant")
    _, admin_view = await api.call("GET", "/v1/tenants/acme", headers=api.admin)
    assert status == 200 and mine == admin_view
    status, _ = await api.call("GET", "/v1/tenant", headers=api.admin)
    assert status == 400  # an admin names the tenant
    _, ops = await _key(api, api.admin, role="admin", name="ops")
    for s in ("past_due", "active"):
        status, _ = await api.call("PUT", "/v1/tenants/acme/subscription", headers=_bearer(ops),
                                   json={"subscription_status": s})
        assert status == 200
    await _drained(persister)
    status, history = await api.call("GET", "/v1/tenants/acme/subscription/history", headers=api.admin)
    assert status == 200, history
    assert [(h["subscription_status"], h["changed_by"]) for h in history["data"]] == [
        ("active", None), ("past_due", ops["key_id"]), ("active", ops["key_id"])]
    assert all(h["changed_at"] for h in history["data"])
    status, _ = await api.call("GET", "/v1/tenants/acme/subscription/history")
    assert status == 403
    status, _ = await api.call("GET", "/v1/tenants/nobody/subscription/history", headers=api.admin)
    assert status == 404


async def test_order_status_and_booking_cancels_are_gated_and_exact(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/orders", json={
        "order_id": "o1", "items": [{"sku": "a", "quantity": 1}], "total": "5", "currency": "usd"})
    assert status == 201
    status, o = await api.call("PATCH", "/v1/orders/o1", json={"status": "shipped"})
    assert status == 200 and o["status"] == "shipped" and o["updated_at"], o
    slot = {"resource_id": "room", "slot_start": "2031-01-01T10:00:00Z", "slot_end": "2031-01-01T11:00:00Z"}
    made = await asyncio.gather(*(api.call("POST", "/v1/bookings", json={**slot, "capacity": 3, "user_id": f"u{i}"})
                                  for i in range(5)))
    ids = [b["booking_id"] for s, b in made if s == 201]
    assert len(ids) == 3
    reader = await api.new_key("reader", scopes=["read"])
    status, body = await api.call("POST", f"/v1/bookings/{ids[0]}/cancel", headers=reader)
    assert (status, body["details"]) == (403, {"scope": "bookings:write"})
    status, body = await api.call("PATCH", "/v1/orders/o1", headers=reader, json={"status": "paid"})
    assert (status, body["details"]) == (403, {"scope": "orders:write"})
    cancels = await asyncio.gather(*(api.call("POST", f"/v1/bookings/{ids[0]}/cancel") for _ in range(100)))
    codes = Counter(s if s == 200 else b["code"] for s, b in cancels)
    assert codes == {200: 1, "CONFLICT": 99}, codes
    status, b = await api.call("GET", f"/v1/bookings/{ids[0]}")
    assert (status, b["status"], b["booked"], b["capacity"]) == (200, "canceled", 2, 3)
    status, _ = await api.call("POST", "/v1/bookings", json={**slot, "user_id": "late"})
    assert status == 201  # the freed place
    # gated like creation: an inactive tenant cannot cancel or change status
    status, _ = await api.call("PUT", "/v1/tenants/acme/subscription", headers=api.admin,
                               json={"subscription_status": "suspended"})
    assert status == 200
    status, body = await api.call("POST", f"/v1/bookings/{ids[1]}/cancel")
    assert (status, body["code"]) == (403, "SUBSCRIPTION_INACTIVE")
    status, body = await api.call("PATCH", "/v1/orders/o1", json={"status": "delivered"})
    assert (status, body["code"]) == (403, "SUBSCRIPTION_INACTIVE")
    await _drained(persister)
    assert await runtime.pool.fetchval("SELECT status FROM orders WHERE order_id = 'o1'") == "shipped"
    assert await runtime.pool.fetchval(
        "SELECT booked FROM booking_slots WHERE tenant_id = 'acme' AND resource_id = 'room'") == 3
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM bookings WHERE tenant_id = 'acme' AND status = 'canceled'") == 1
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
