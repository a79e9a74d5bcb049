"""Reconcile and restore of promo codes: counters against uses in both stores."""

from __future__ import annotations

import asyncio

import pytest

from dropgate.errors import CustomerLimit, Exhausted
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.persistence.test_reconcile import _drained
from tests.persistence.test_restore import _wipe

CODES = ("P1", "P2", "P3")


async def _drop(runtime: Runtime, uses: int = 150) -> list[str]:
    await runtime.tenants.create("pt", name="pt", status="active", trial_end_ms=None)
    await runtime.promos.create("pt", code="P1", kind="fixed", value=500, currency="usd")
    await runtime.promos.create("pt", code="P2", kind="percent", value=125000, currency="usd",
                                per_customer_limit=3, ends_at_ms=4_102_444_800_000)
    await runtime.promos.create("pt", code="P3", kind="fixed", value=100, currency="usd", max_uses=40)
    ids: list[str] = []

    async def one(i: int) -> None:
        try:
            r = await runtime.promos.redeem_minor("pt", CODES[i % 3], customer_id=f"c{i % 60}",
                                                  base_minor=1000 + i, currency="usd")
            ids.append(r.use_id)
        except (CustomerLimit, Exhausted):
            pass

    await asyncio.gather(*(one(i) for i in range(uses)))
    return ids


async def test_stores_agree_after_a_drain_and_unpersisted_uses_are_in_flight(
        runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    early = await reconcile(runtime, wait_s=0, entities=["promo"])
    assert early.result == "agree", early.drifts
    assert set(early.in_flight) >= {"promo:pt:P1", "promo:pt:P2", "promo:pt:P3"}
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
    counts = {c.kind: c for c in report.counts}
    used = await runtime.pool.fetchval("SELECT count(*) FROM promo_code_uses WHERE tenant_id = 'pt'")
    assert counts["promo"].checked == 3 and counts["promo"].members == used > 0


async def test_hand_made_drift_is_found_exactly_and_repaired(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    tk = runtime.keys.tenant("pt")
    gone = await runtime.pool.fetchval(
        "DELETE FROM promo_code_uses WHERE tenant_id = 'pt' AND code = 'P1' AND use_id = "
        "(SELECT min(use_id) FROM promo_code_uses WHERE tenant_id = 'pt' AND code = 'P1') RETURNING use_id")
    await runtime.redis.hset(tk.promo("P2"), "times_used", 999)
    some_customer = next(iter(await runtime.redis.hkeys(tk.promo_customers("P3"))))
    await runtime.redis.hset(tk.promo_customers("P3"), some_customer, 0)
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('dropgate.promo_counter_sync', 'on', true)")
        await conn.execute("UPDATE promo_codes SET total_bonus_issued = 1 WHERE tenant_id = 'pt' AND code = 'P3'")
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 1
    found = {(d.entity, d.field, d.problem) for d in report.drifts}
    assert found == {
        ("promo:pt:P1", "times_used", "differs"),
        ("promo:pt:P1", "total_bonus_issued", "differs"),
        ("promo:pt:P1", "uses", "missing_in_postgres"),
        ("promo:pt:P2", "times_used", "differs"),
        ("promo:pt:P2", "times_used", "counter"),
        ("promo:pt:P3", "customers", "counter"),
        ("promo:pt:P3", "total_bonus_issued", "differs"),
        ("promo:pt:P3", "total_bonus_issued", "counter"),
    }, report.drifts
    assert next(d for d in report.drifts if d.field == "uses").redis == [gone]
    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0, repaired.drifts
    actions = {(r.entity, r.action) for r in repaired.repairs}
    assert {("promo:pt:P1", "reemitted"), ("promo:pt:P2", "restored"), ("promo:pt:P3", "recounted"),
            ("promo:pt:P3", "restored")} <= actions
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM promo_code_uses WHERE tenant_id = 'pt' AND use_id = $1", gone) == 1
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_restore_after_the_keys_are_deleted_serves_as_before(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    before = {c: await runtime.promos.get("pt", c) for c in CODES}
    assert await _wipe(runtime) > 0
    result = await restore(runtime)
    assert result.restored["promos/promo"] == 3
    assert {c: await runtime.promos.get("pt", c) for c in CODES} == before
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
    # the limits hold on the restored state: P3 is exhausted at 40, c0 used P1 already
    p3 = before["P3"]
    for i in range(40 - p3.times_used):
        await runtime.promos.redeem_minor("pt", "P3", customer_id=f"late{i}", base_minor=100, currency="usd")
    with pytest.raises(Exhausted):
        await runtime.promos.redeem_minor("pt", "P3", customer_id="one-more", base_minor=100, currency="usd")
    with pytest.raises(CustomerLimit):
        await runtime.promos.redeem_minor("pt", "P1", customer_id="c0", base_minor=100, currency="usd")
    await _drained(runtime.new_persister(name="after-restore"))
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
