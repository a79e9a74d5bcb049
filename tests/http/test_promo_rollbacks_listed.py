"""A rolled-back promo use is recorded and listed as such (#17): `GET /v1/promos/{code}/uses`
shows it with `rolled_back: true`, while the counters, reconcile and restore see only the
live uses."""

from __future__ import annotations

import asyncio

from dropgate.engine.events import Event, PromoUseRolledBack
from dropgate.persistence.appliers.promos import promo_use_rolled_back
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.http.test_lists_api import walk


async def _redeem(api: Api, customer: str, amount: str) -> str:
    status, use = await api.call("POST", "/v1/promos/RB/redeem",
                                 json={"customer_id": customer, "base_amount": amount})
    assert status == 201, use
    await asyncio.sleep(0.002)  # each use its own millisecond: the list orders by time, then by id
    return str(use["use_id"])


async def test_rolled_back_use_listed_and_counters_follow_live_uses(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/promos", json={
        "code": "RB", "bonus": {"kind": "percent", "percent": "10"}, "currency": "usd",
        "per_customer_limit": 5})
    assert status == 201
    kept = await _redeem(api, "alice", "10")
    undone = await _redeem(api, "alice", "20")
    other = await _redeem(api, "bob", "30")
    await persister.drain()  # the use rows exist before their rollback is applied
    status, body = await api.call("DELETE", f"/v1/promos/RB/uses/{undone}")
    assert status == 200 and body["times_used"] == 2, body
    status, body = await api.call("DELETE", f"/v1/promos/RB/uses/{other}")
    assert status == 200
    assert (await api.call("DELETE", f"/v1/promos/RB/uses/{other}"))[0] == 404  # once only

    await persister.drain()
    uses = await walk(api, "/v1/promos/RB/uses", limit=1)
    assert {u["use_id"]: u["rolled_back"] for u in uses} == {kept: False, undone: True, other: True}
    assert [u["use_id"] for u in uses] == [other, undone, kept]  # newest first, rollbacks in place
    undone_item = next(u for u in uses if u["use_id"] == undone)
    assert (undone_item["customer_id"], undone_item["bonus_amount"]) == ("alice", "2.00")
    alice = await walk(api, "/v1/promos/RB/uses", limit=10, customer_id="alice")
    assert {u["use_id"]: u["rolled_back"] for u in alice} == {kept: False, undone: True}

    # PostgreSQL's counters and the live rows: only the use that stands
    row = await runtime.pool.fetchrow(
        "SELECT times_used, total_bonus_issued FROM promo_codes WHERE tenant_id = 'acme' AND code = 'RB'")
    assert (row["times_used"], row["total_bonus_issued"]) == (1, 100)
    assert await runtime.pool.fetchval(
        "SELECT array_agg(use_id) FROM promo_code_uses WHERE tenant_id = 'acme' AND code = 'RB'") == [kept]
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM promo_code_rolled_back_uses WHERE rolled_back_at IS NOT NULL") == 2
    _, promo = await api.call("GET", "/v1/promos")
    assert promo["data"][0]["times_used"] == 1
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_rollback_replayed_changes_nothing(api: Api, runtime: Runtime, persister: Persister) -> None:
    """A log entry applied twice (at least once delivery to PostgreSQL): one rollback row."""
    status, _ = await api.call("POST", "/v1/promos", json={
        "code": "RB", "bonus": {"kind": "percent", "percent": "10"}, "currency": "usd",
        "per_customer_limit": 5})
    assert status == 201
    use = await _redeem(api, "carol", "10")
    assert (await api.call("DELETE", f"/v1/promos/RB/uses/{use}"))[0] == 200
    await persister.drain()
    again = Event(id="0-1", partition=0, type="promo.use_rolled_back", entity="promo:acme:RB", version=3,
                  data=PromoUseRolledBack(tenant_id="acme", code="RB", use_id=use, customer_id="carol",
                                          bonus_amount=100, at_ms=1))
    async with runtime.pool.acquire() as conn:
        await promo_use_rolled_back(conn, [again])
    rows = await runtime.pool.fetch("SELECT use_id, rolled_back_at FROM promo_code_rolled_back_uses")
    assert [r["use_id"] for r in rows] == [use] and rows[0]["rolled_back_at"].year > 2000
