"""A purchase's history is written without a per-row lookup PostgreSQL plans on a guess (#19).

Before migration 0017 each history row's foreign key was checked by a lookup in
offer_purchases, planned once per connection. Planned while the table was small and had
no statistics (this machine's PostgreSQL runs with autovacuum off), it used
``offer_purchases_list_user``, which leads with tenant_id but not purchase_id, and read
the tenant's whole index for every row: ``make bench`` saw the persister crawl behind an
offers crowd. The first purchases here arrive one at a time, as a drop's first buyers do,
then a crowd; the index statistics must show that the persister's writes touched no
index of offer_purchases but the primary key (its upsert's conflict check). The history
must still be whole, and a purchase deleted or truncated by hand must still take its
history with it.
"""

from __future__ import annotations

import asyncio
import time

from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime

TENANT, OFFER = "t1", "hot"


async def _holds(runtime: Runtime, count: int, tag: str) -> None:
    holds = [HoldRequest(purchase_id=new_purchase_id(), user_id=f"{tag}u{j}", quantity=1, idem_digest="",
                         fingerprint="") for j in range(count)]
    results = await runtime.offers.purchase_batch(
        TENANT, OFFER, holds, [], hold_ttl_ms=1_800_000, rate_interval_ms=0.001, rate_burst=10**6,
        idem_ttl_ms=86_400_000, idem_stale_ms=60_000)
    assert all(r.ok for r in results), next(r for r in results if not r.ok)


async def _index_scans(runtime: Runtime, at_least_pkey: int) -> dict[str, int]:
    """offer_purchases' index scans in this test's schema, once the backends that wrote
    them have reported (PostgreSQL publishes a backend's counters within seconds, all at once)."""
    deadline = time.monotonic() + 30
    while True:
        rows = await runtime.pool.fetch(
            "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes "
            "WHERE schemaname = current_schema() AND relname = 'offer_purchases'")
        scans = {r["indexrelname"]: r["idx_scan"] for r in rows}
        if scans.get("offer_purchases_pkey", 0) >= at_least_pkey or time.monotonic() > deadline:
            return scans
        await asyncio.sleep(0.5)


async def _setup(runtime: Runtime, persister: Persister) -> None:
    await runtime.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
    await runtime.offers.create(TENANT, offer_id=OFFER, event_id="drop", name="Hot", price_minor=2500,
                                currency="usd", total=10**9, max_per_order=3, expires_at_ms=None, active=True)
    await persister.drain()


async def test_a_crowd_after_the_first_buyers_reads_only_the_primary_key(
        runtime: Runtime, persister: Persister) -> None:
    await _setup(runtime, persister)
    for i in range(8):  # the first buyers one at a time: every lookup is planned on a tiny table
        await _holds(runtime, 1, f"s{i}")
        await persister.drain()
    for i in range(4):
        await _holds(runtime, 500, f"b{i}")
    await persister.drain()
    purchases = 8 + 4 * 500

    scans = await _index_scans(runtime, at_least_pkey=purchases)
    assert scans["offer_purchases_pkey"] >= purchases, scans  # the counters were reported
    assert {name: n for name, n in scans.items() if name != "offer_purchases_pkey" and n} == {}
    # the history is whole: one row per purchase (each purchase has one version here), none orphaned
    assert await runtime.pool.fetchval("SELECT count(*) FROM offer_purchase_history") == purchases
    assert await runtime.pool.fetchval(
        """SELECT count(*) FROM offer_purchase_history h WHERE NOT EXISTS (
               SELECT 1 FROM offer_purchases p WHERE p.tenant_id = h.tenant_id AND p.purchase_id = h.purchase_id)
        """) == 0


async def test_a_purchase_deleted_or_truncated_by_hand_takes_its_history(
        runtime: Runtime, persister: Persister) -> None:
    await _setup(runtime, persister)
    await _holds(runtime, 3, "d")
    await persister.drain()
    gone = await runtime.pool.fetchval("SELECT purchase_id FROM offer_purchases ORDER BY purchase_id LIMIT 1")
    await runtime.pool.execute("DELETE FROM offer_purchases WHERE purchase_id = $1", gone)
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM offer_purchase_history WHERE purchase_id = $1", gone) == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM offer_purchase_history") == 2  # the others kept
    # CASCADE as before: offer_refunds keeps its key to offer_purchases
    await runtime.pool.execute("TRUNCATE offer_purchases CASCADE")
    assert await runtime.pool.fetchval("SELECT count(*) FROM offer_purchase_history") == 0
