"""Reconcile and restore of campaign code pools: every code's status per campaign and type."""

from __future__ import annotations

import asyncio

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.persistence.test_reconcile import _drained
from tests.persistence.test_restore import _wipe


async def _pool(runtime: Runtime) -> list[str]:
    await runtime.tenants.create("ct", name="ct", status="active", trial_end_ms=None)
    await runtime.codes.upload_batch("ct", "spring", "gold", [f"G{i:04d}" for i in range(300)])
    await runtime.codes.upload_batch("ct", "spring", "silver", [f"S{i:04d}" for i in range(200)])
    await runtime.codes.upload_batch("ct", "autumn", "gold", [f"A{i:04d}" for i in range(100)])
    held = await asyncio.gather(*(runtime.codes.reserve("ct", "spring", "gold", 3) for _ in range(40)))
    taken = [c for r in held for c in r.codes]
    await runtime.codes.assign("ct", "spring", taken[:60])
    await runtime.codes.release("ct", "spring", taken[60:80])
    await runtime.codes.reserve("ct", "autumn", "gold", 10, ttl_ms=1)  # expires at once
    return taken


async def test_stores_agree_after_a_drain_and_unpersisted_changes_are_in_flight(
        runtime: Runtime, persister: Persister) -> None:
    await _pool(runtime)
    early = await reconcile(runtime, wait_s=0, entities=["codes"])
    assert early.result == "agree", early.drifts
    assert set(early.in_flight) == {"codes:ct:spring", "codes:ct:autumn"}
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
    counts = {c.kind: c for c in report.counts}
    assert counts["codes"].checked == 2 and counts["codes"].members == 600


async def test_hand_made_drift_is_found_exactly_and_repaired(runtime: Runtime, persister: Persister) -> None:
    taken = await _pool(runtime)
    await _drained(persister)
    tk = runtime.keys.tenant("ct")
    # a row deleted in PostgreSQL; a status changed in PostgreSQL; a record and a set changed in Redis
    await runtime.pool.execute("DELETE FROM campaign_codes WHERE tenant_id = 'ct' AND code = 'S0001'")
    await runtime.pool.execute("UPDATE campaign_codes SET status = 'available', reserve_id = NULL, "
                               "reserved_at = NULL, expires_at = NULL WHERE code = $1", taken[100])
    # an autumn code still in the available set (10 of its 100 were reserved at random)
    available = sorted(m.decode() for m in await runtime.redis.smembers(tk.codes_available("autumn", "gold")))
    await runtime.redis.hset(tk.codes_records("autumn"), available[0], "gold|s||||1")
    await runtime.redis.srem(tk.codes_available("spring", "silver"), "S0100")
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 1
    found = {(d.entity, d.field, d.problem) for d in report.drifts}
    assert found == {
        ("codes:ct:spring", "codes", "missing_in_postgres"),
        ("codes:ct:spring", "status", "differs"),
        ("codes:ct:spring", "silver:available", "counter"),
        ("codes:ct:autumn", "status", "differs"),
        ("codes:ct:autumn", "gold:assigned", "counter"),
        ("codes:ct:autumn", "gold:available", "counter"),
    }, report.drifts
    assert next(d for d in report.drifts if d.field == "codes").redis == ["S0001"]
    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0, repaired.drifts
    actions = {(r.entity, r.action) for r in repaired.repairs}
    assert {("codes:ct:spring", "reemitted"), ("codes:ct:spring", "restored"),
            ("codes:ct:autumn", "restored")} <= actions
    assert await runtime.pool.fetchval("SELECT status FROM campaign_codes WHERE code = 'S0001'") == "available"
    # PostgreSQL won the equal-version disagreement: the code is available again in Redis
    assert await runtime.redis.sismember(tk.codes_available("spring", "gold"), taken[100])
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_restore_after_the_keys_are_deleted_serves_as_before(runtime: Runtime, persister: Persister) -> None:
    taken = await _pool(runtime)
    await _drained(persister)
    before = {(c, t): await runtime.codes.count("ct", c, t) for c, t in
              (("spring", "gold"), ("spring", "silver"), ("autumn", "gold"))}
    assert await _wipe(runtime) > 0
    result = await restore(runtime)
    assert result.restored["codes/codes"] == 2
    after = {(c, t): await runtime.codes.count("ct", c, t) for c, t in before}
    assert after == before
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
    # reservations kept their holder and expiry: the holder may still assign
    held = [c for c in taken[80:]]
    assert (await runtime.codes.assign("ct", "spring", held)).updated == len(held)
    rest = await runtime.codes.reserve("ct", "spring", "gold", 1000)
    assert len(rest.codes) == before[("spring", "gold")].available
    autumn = await runtime.codes.reserve("ct", "autumn", "gold", 1000)
    assert len(autumn.codes) == 100  # the expired reservation returned to the pool
    await _drained(runtime.new_persister(name="after-restore"))
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
