"""Reconcile and restore of tenant operations: balances against the ledger rows,
withdrawals, orders, booking slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.persistence.test_reconcile import _drained
from tests.persistence.test_restore import _wipe

START = "2030-01-01T10:00:00Z"
END = "2030-01-01T11:00:00Z"
START_MS, END_MS = 1_893_492_000_000, 1_893_495_600_000


async def _ok(api: Api, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    status, out = await api.call("POST", path, json=body, headers=headers)
    assert status in (200, 201), out
    return out


async def _drop(api: Api) -> None:
    alice = await api.new_key("alice")
    await asyncio.gather(*(_ok(api, "/v1/payments", {"amount": f"{10 + i}.00", "currency": "usd",
                                                      "reference": f"r{i}"}) for i in range(30)))
    await _ok(api, "/v1/payments", {"amount": "7.50", "currency": "eur", "reference": "e"})
    for _ in range(3):
        await _ok(api, "/v1/withdrawals", {"amount": "5.00", "currency": "usd", "initiated_by": "alice"}, alice)
    w = await _ok(api, "/v1/withdrawals", {"amount": "20.00", "currency": "usd", "initiated_by": "alice"}, alice)
    await _ok(api, f"/v1/withdrawals/{w['withdrawal_id']}/approve", {"approved_by": "bob"})
    await _ok(api, "/v1/orders", {"order_id": "ord1", "items": [{"sku": "tee", "quantity": 2}], "total": "40.00",
                                  "currency": "usd"})
    results = await asyncio.gather(*(api.call("POST", "/v1/bookings", json={
        "resource_id": "room1", "slot_start": START, "slot_end": END, "capacity": 5, "user_id": f"u{i}"})
        for i in range(8)))
    assert sum(1 for s, _ in results if s == 201) == 5


async def test_stores_agree_after_a_drain_and_unpersisted_operations_are_in_flight(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(api)
    early = await reconcile(runtime, wait_s=0, entities=["balance", "withdrawal", "order", "slot"])
    assert early.result == "agree", early.drifts
    assert {"balance:acme:usd", "order:acme:ord1", f"slot:acme:room1:{START_MS}:{END_MS}"} <= set(early.in_flight)
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
    counts = {c.kind: c.checked for c in report.counts}
    assert counts["balance"] == 2 and counts["withdrawal"] == 4 and counts["order"] == 1 and counts["slot"] == 1


async def test_hand_made_drift_is_found_exactly_and_repaired(api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(api)
    await _drained(persister)
    tk = runtime.keys.tenant("acme")
    slot = f"slot:acme:room1:{START_MS}:{END_MS}"
    await runtime.pool.execute("DELETE FROM orders WHERE order_id = 'ord1'")
    await runtime.pool.execute("UPDATE tenant_balances SET balance_minor = 1 WHERE currency = 'eur'")
    await runtime.redis.hincrby(tk.tenant(), "bal:usd", 100)
    await runtime.pool.execute("UPDATE booking_slots SET booked = 3")
    wd = await runtime.pool.fetchval("SELECT min(withdrawal_id) FROM withdrawals WHERE status = 'pending'")
    await runtime.redis.hset(tk.withdrawal(wd), "amount", 1)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 1
    found = {(d.entity, d.field, d.problem) for d in report.drifts}
    assert found == {
        ("order:acme:ord1", "order", "missing_in_postgres"),
        ("balance:acme:eur", "balance", "differs"),
        ("balance:acme:eur", "balance", "counter"),
        ("balance:acme:usd", "balance", "differs"),
        (slot, "booked", "differs"),
        (slot, "booked", "counter"),
        (f"withdrawal:acme:{wd}", "amount", "differs"),
    }, report.drifts
    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0, repaired.drifts
    actions = {(r.entity, r.action) for r in repaired.repairs}
    assert {("order:acme:ord1", "reemitted"), ("balance:acme:eur", "recounted"), ("balance:acme:usd", "restored"),
            (slot, "recounted"), (f"withdrawal:acme:{wd}", "restored")} <= actions, actions
    assert await runtime.pool.fetchval("SELECT total_minor FROM orders WHERE order_id = 'ord1'") == 4000
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_a_balance_only_redis_has_is_found_and_set_from_the_rows(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(api)
    await _drained(persister)
    tk = runtime.keys.tenant("acme")
    await runtime.redis.hset(tk.tenant(), "bal:gbp", 500)  # no ledger row gives it
    report = await reconcile(runtime, wait_s=0, entities=["balance"])
    assert {(d.entity, d.field, d.problem) for d in report.drifts} == {
        ("balance:acme:gbp", "balance", "missing_in_postgres")}, report.drifts
    repaired = await reconcile(runtime, repair=True, wait_s=0, entities=["balance"])
    assert ("balance:acme:gbp", "restored") in {(r.entity, r.action) for r in repaired.repairs}
    assert await runtime.redis.hget(tk.tenant(), "bal:gbp") == b"0"  # what the rows give


@pytest.mark.cluster
async def test_restore_after_the_keys_are_deleted_serves_as_before(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(api)
    await _drained(persister)
    status, tenant_before = await api.call("GET", "/v1/tenants/acme", headers=api.admin)
    assert status == 200
    _, order_before = await api.call("GET", "/v1/orders/ord1")
    assert await _wipe(runtime) > 0
    result = await restore(runtime)
    assert result.restored["ledger/balance+withdrawal+order+slot"] == 2 + 4 + 1 + 1
    status, tenant_after = await api.call("GET", "/v1/tenants/acme", headers=api.admin)
    assert tenant_after["balance"] == tenant_before["balance"]
    assert (await api.call("GET", "/v1/orders/ord1"))[1] == order_before
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
    # the slot is still full, pending withdrawals can still be approved
    status, _ = await api.call("POST", "/v1/bookings", json={"resource_id": "room1", "slot_start": START,
                                                             "slot_end": END, "user_id": "late"})
    assert status == 409
    wd = await runtime.pool.fetchval("SELECT min(withdrawal_id) FROM withdrawals WHERE status = 'pending'")
    await _ok(api, f"/v1/withdrawals/{wd}/approve", {"approved_by": "bob"})
    await _drained(runtime.new_persister(name="after-restore"))
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
