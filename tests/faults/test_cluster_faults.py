"""Redis Cluster faults under a purchase crowd: a master killed with -9 (its replica
takes over) and a live partition's slot moved to another master."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import create_offer, fake_stripe, pg_offer, purchase, stripe_settings
from tests.support.redis_cluster import LocalCluster, local_cluster

__all__ = ["fake_stripe"]


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of the test's own: a failover leaves a master dead and another one
    without a replica."""
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def redis_url(own_cluster: LocalCluster) -> str:
    return own_cluster.url


@pytest.fixture
def redis_wait() -> int:
    return 0


@pytest.fixture
def settings(make_settings: Callable[..., Settings], fake_stripe: FakeStripe, redis_wait: int) -> Settings:
    return stripe_settings(make_settings, fake_stripe, redis_timeout_s=1.0, redis_wait=redis_wait,
                           stripe_timeout_s=10.0,  # a loaded machine: the fault is Redis, not Stripe
                           redis_wait_timeout_ms=500)


async def _crowd(api: Api, offer: str, n: int, during: Callable[[], Any]) -> list[tuple[int, Any]]:
    """``n`` purchases of one unit, ``during()`` run (in a thread) once a third answered."""
    answered = 0
    fired = asyncio.Event()

    async def one(i: int) -> tuple[int, Any]:
        nonlocal answered
        await asyncio.sleep(i * 0.004)  # a stream of buyers, not one burst
        try:
            result = await purchase(api, offer, f"u{i}", 1)
        except Exception as exc:  # a reply lost with the master: not acknowledged
            result = (0, repr(exc))
        answered += 1
        if answered == n // 3:
            fired.set()
        return result

    async def fault() -> None:
        await fired.wait()
        await asyncio.to_thread(during)

    results, _ = await asyncio.gather(asyncio.gather(*(one(i) for i in range(n))), fault())
    return list(results)


async def _settle(runtime: Runtime, persister: Persister) -> None:
    deadline = time.monotonic() + 60
    while True:  # the client refreshes its slot map after the errors
        try:
            await runtime.redis.ping()
            await persister.drain(timeout_s=60)
            return
        except Exception:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("redis_wait", [0, 1], ids=["no-wait", "wait-1"])
async def test_a_master_killed_mid_crowd_loses_no_acknowledged_purchase_it_replicated(
        api: Api, runtime: Runtime, persister: Persister, own_cluster: LocalCluster,
        redis_wait: int) -> None:
    await create_offer(api, "hot", 400)
    victim = own_cluster.master_of(runtime.keys.tenant("acme").offer("hot"))
    results = await _crowd(api, "hot", 600, victim.kill)
    await asyncio.to_thread(own_cluster.wait_ok, 60)  # a replica took over
    await _settle(runtime, persister)

    acked = {body["purchase_id"] for status, body in results if status == 201}
    assert acked, "no purchase was acknowledged before the kill"
    state = await runtime.offers.read("acme", "hot")
    assert state.reserved + state.sold <= state.total == 400  # nothing oversold
    row = await pg_offer(runtime, "acme", "hot")
    assert row["reserved"] == row["rows_reserved"] == state.reserved  # PostgreSQL = Redis
    rows = {r["purchase_id"] for r in await runtime.pool.fetch(
        "SELECT purchase_id FROM offer_purchases WHERE tenant_id = 'acme'")}
    lost = acked - rows
    # Without WAIT an acknowledged write can die with its master before it reached the
    # replica; on loopback replication is fast. Measured and stated in README.
    print(f"failover (WAIT {redis_wait}): {len(acked)} acknowledged, {len(lost)} lost, "
          f"{sum(1 for s, _ in results if s not in (201, 409))} refused or unanswered, "
          f"{runtime.scripts.unreplicated} answered after WAIT timed out")
    if redis_wait:  # only a purchase answered after its WAIT ran out may be gone
        assert len(lost) <= runtime.scripts.unreplicated, lost
    else:
        assert len(lost) <= max(5, len(acked) // 20), lost
    assert rows <= acked | rows  # PostgreSQL holds no purchase Redis does not
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


def _move_slot(cluster: LocalCluster, key: str) -> None:
    """CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE the keys, SETSLOT NODE: what
    ``redis-cli --cluster reshard`` does for one slot."""
    source = cluster.master_of(key)
    target = next(n for n in cluster.masters() if n.port != source.port)
    src, dst = source.client(), target.client()
    slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
    src_id = src.execute_command("CLUSTER", "MYID")
    dst_id = dst.execute_command("CLUSTER", "MYID")
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while True:
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 50)
        if not keys:
            break
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 10000, "KEYS", *keys)
        time.sleep(0.02)  # writes go on meanwhile (ASK redirections)
    for node in cluster.masters():
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    assert cluster.master_of(key).port == target.port


@pytest.mark.slow
async def test_moving_a_live_partitions_slot_during_writes_loses_nothing(
        api: Api, runtime: Runtime, persister: Persister, own_cluster: LocalCluster) -> None:
    await asyncio.to_thread(own_cluster.wait_ok, 60)
    await create_offer(api, "moving", 300)
    key = runtime.keys.tenant("acme").offer("moving")
    results = await _crowd(api, "moving", 400, lambda: _move_slot(own_cluster, key))
    codes = {status for status, _ in results}
    assert codes <= {201, 409}, [r for r in results if r[0] not in (201, 409)][:3]
    acked = {body["purchase_id"] for status, body in results if status == 201}
    assert len(acked) == 300  # every unit sold exactly once, no request failed
    await _settle(runtime, persister)
    state = await runtime.offers.read("acme", "moving")
    assert (state.reserved, state.total) == (300, 300)
    rows = {r["purchase_id"] for r in await runtime.pool.fetch(
        "SELECT purchase_id FROM offer_purchases WHERE tenant_id = 'acme' AND offer_id = 'moving'")}
    assert rows == acked
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts

