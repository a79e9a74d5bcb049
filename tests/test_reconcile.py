"""Reconcile: agreement, in-flight events, hand-made drift found exactly and repaired."""

from __future__ import annotations

import asyncio

from dropgate.engine.errors import AlreadyUsed
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime

TENANTS = ("t1", "t2")
CODES = ("A", "B", "C", "D")


async def _drained(persister: Persister) -> None:
    """Drain, then give the partitions up (as a stopped persister does)."""
    await persister.drain()
    await persister.close()
    await persister.run()


async def _drop(runtime: Runtime, users: int = 200) -> None:
    for t in TENANTS:
        await runtime.tenants.create(t, name=t, status="active", trial_end_ms=None)
        await runtime.api_keys.create(role="service", tenant_id=t)
        for c in CODES:
            await runtime.invites.create(t, code=c, max_uses=0 if c != "D" else 50, expires_at_ms=None, active=True)

    async def one(i: int) -> None:
        try:
            await runtime.invites.redeem(TENANTS[i % 2], CODES[i % 4], user_id=f"u{i}")
        except Exception:
            pass

    await asyncio.gather(*(one(i) for i in range(users)))


async def test_stores_agree_after_the_persister_drained(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.result == "agree", report.drifts
    assert report.exit_code == 0
    counts = {c.kind: c for c in report.counts}
    assert counts["invite"].checked == 8 and counts["invite"].members == 200
    assert counts["tenant"].checked == 2 and counts["apikey"].checked == 2


async def test_unpersisted_events_are_in_flight_not_drift(runtime: Runtime) -> None:
    await _drop(runtime)
    report = await reconcile(runtime, wait_s=0)
    assert report.result == "agree", report.drifts
    assert len(report.in_flight) == 2 + 2 + 8
    assert report.backlog > 0


async def test_hand_made_drift_is_found_exactly_and_repaired(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    tk = runtime.keys.tenant("t1")
    # 1. a use row deleted in PostgreSQL
    await runtime.pool.execute("DELETE FROM invite_code_uses WHERE tenant_id = 't1' AND code = 'A' AND user_id = 'u0'")
    # 2. a counter changed in PostgreSQL
    await runtime.pool.execute("UPDATE invite_codes SET used_count = 99 WHERE tenant_id = 't2' AND code = 'B'")
    # 3. a counter changed in Redis (by hand: the fault this test injects)
    await runtime.redis.hset(tk.invite("C"), "used_count", 7)
    # 4. a tenant's name changed in PostgreSQL
    await runtime.pool.execute("UPDATE tenants SET name = 'renamed' WHERE tenant_id = 't2'")
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 1
    found = {(d.entity, d.field, d.problem) for d in report.drifts}
    assert found == {
        ("invite:t1:A", "used_count", "differs"),
        ("invite:t1:A", "uses", "missing_in_postgres"),
        ("invite:t2:B", "used_count", "differs"),
        ("invite:t2:B", "used_count", "counter"),
        ("invite:t1:C", "used_count", "differs"),
        ("invite:t1:C", "used_count", "counter"),
        ("tenant:t2", "name", "differs"),
    }, report.drifts
    uses = next(d for d in report.drifts if d.field == "uses")
    assert uses.redis == ["u0"]

    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0, repaired.drifts
    assert repaired.drifts_before_repair
    actions = {(r.entity, r.action) for r in repaired.repairs}
    assert ("invite:t2:B", "recounted") in actions
    assert ("invite:t1:A", "reemitted") in actions
    assert ("invite:t1:C", "restored") in actions
    assert ("tenant:t2", "restored") in actions
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM invite_code_uses WHERE tenant_id = 't1' AND code = 'A' AND user_id = 'u0'") == 1
    assert (await runtime.tenants.get("t2")).name == "renamed"  # PostgreSQL wins at equal versions
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
    try:
        await runtime.invites.redeem("t1", "A", user_id="u0")
        raise AssertionError("u0 redeemed twice")
    except AlreadyUsed:
        pass
