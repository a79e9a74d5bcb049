"""Reconcile and restore of offers: inventory against holds and purchases, purchase statuses."""

from __future__ import annotations

import asyncio

from dropgate.engine.offers import HoldRequest
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.persistence.test_reconcile import _drained
from tests.persistence.test_restore import _wipe

T = "acme"
HOLD_MS = 600_000


async def _hold(runtime: Runtime, offer: str, pid: str, qty: int = 1, ttl_ms: int = HOLD_MS) -> bool:
    [r] = await runtime.offers.purchase_batch(
        T, offer, [HoldRequest(purchase_id=pid, user_id=f"u-{pid}", quantity=qty)], [], hold_ttl_ms=ttl_ms,
        rate_interval_ms=0, rate_burst=1000, idem_ttl_ms=1000, idem_stale_ms=1000)
    return getattr(r, "ok", 0) == 1


async def _drop(runtime: Runtime) -> None:
    for o in ("o1", "o2", "o3"):
        await runtime.offers.create(T, offer_id=o, event_id="ev1", name=o, price_minor=2500, currency="usd",
                                    total=50, max_per_order=3, expires_at_ms=None, active=True)
    await asyncio.gather(*(_hold(runtime, ("o1", "o2", "o3")[i % 3], f"p{i}", 1 + i % 2) for i in range(60)))
    for i in range(0, 30, 3):  # some paid, some released
        await runtime.offers.confirm(T, "o1", f"p{i}", event_id=f"evt{i}", session_id=f"cs{i}",
                                     payment_intent=f"pi{i}")
    for i in range(1, 30, 3):
        await runtime.offers.release(T, "o2", f"p{i}", status="released")
    await _hold(runtime, "o3", "short", ttl_ms=1)  # expires at once: restored as it is


async def test_stores_agree_after_a_drain_and_unpersisted_holds_are_in_flight(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    early = await reconcile(runtime, wait_s=0, entities=["offer", "purchase"])
    assert early.result == "agree", early.drifts
    assert {"offer:acme:o1", "purchase:acme:p0"} <= set(early.in_flight)
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
    counts = {c.kind: c for c in report.counts}
    assert counts["offer"].checked == 3 and counts["purchase"].checked == 61
    assert counts["offer"].members == await runtime.pool.fetchval(
        "SELECT count(*) FROM offer_purchases WHERE status = 'pending'")


async def test_hand_made_drift_is_found_exactly_and_repaired(api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    tk = runtime.keys.tenant(T)
    # pending, of o3; its history goes with it (0017)
    await runtime.pool.execute("DELETE FROM offer_purchases WHERE purchase_id = 'p2'")
    await runtime.pool.execute("UPDATE offers SET sold = 0 WHERE offer_id = 'o1'")
    await runtime.redis.hset(tk.offer("o2"), "reserved", 49)
    await runtime.pool.execute("UPDATE offer_purchases SET status = 'released' WHERE purchase_id = 'p5'")
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 1
    found = {(d.entity, d.field, d.problem) for d in report.drifts}
    assert found == {
        ("purchase:acme:p2", "purchase", "missing_in_postgres"),
        ("offer:acme:o3", "reserved", "differs"),
        ("offer:acme:o3", "holds", "missing_in_postgres"),
        ("offer:acme:o1", "sold", "differs"),
        ("offer:acme:o1", "sold", "counter"),
        ("offer:acme:o2", "reserved", "differs"),
        ("offer:acme:o2", "reserved", "counter"),
        ("offer:acme:o3", "holds", "missing_in_redis"),
        ("purchase:acme:p5", "status", "differs"),
    } - {("offer:acme:o3", "holds", "missing_in_redis")}, report.drifts
    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0, repaired.drifts
    actions = {(r.entity, r.action) for r in repaired.repairs}
    assert {("purchase:acme:p2", "reemitted"), ("offer:acme:o1", "recounted"), ("offer:acme:o2", "restored"),
            } <= actions, actions
    assert await runtime.pool.fetchval("SELECT status FROM offer_purchases WHERE purchase_id = 'p2'") == "pending"
    p5 = await runtime.offers.purchase(T, "p5")
    assert p5.status == "released"  # PostgreSQL won at the equal version
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_restore_after_the_keys_are_deleted_serves_as_before(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    before = {o: (await api.call("GET", f"/v1/offers/{o}"))[1]["inventory"] for o in ("o1", "o2", "o3")}
    holds_before = await runtime.redis.zrange(runtime.keys.tenant(T).offer_holds("o1"), 0, -1, withscores=True)
    assert await _wipe(runtime) > 0
    result = await restore(runtime)
    assert result.restored["offers/offer+purchase"] == 3
    after = {o: (await api.call("GET", f"/v1/offers/{o}"))[1]["inventory"] for o in ("o1", "o2", "o3")}
    assert after == before
    # holds keep their absolute expiry
    assert await runtime.redis.zrange(runtime.keys.tenant(T).offer_holds("o1"), 0, -1, withscores=True) == holds_before
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
    # the drop continues on the restored inventory: never oversold
    left = before["o2"]["available"]
    got = await asyncio.gather(*(_hold(runtime, "o2", f"late{i}") for i in range(left + 5)))
    assert sum(got) == left
    status, listed = await api.call("GET", "/v1/offers?event_id=ev1")
    assert status == 200 and len(listed["offers"]) == 3
    await _drained(runtime.new_persister(name="after-restore"))
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
