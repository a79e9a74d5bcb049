"""``/readyz`` reports a partition whose persister holds the lease but does not consume
(persistence/progress.py): the state the kill-Redis fault once left, a live persister
renewing its leases while one partition's log filled up to ``max_backlog``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dropgate.persistence.persister import GROUP, Persister
from dropgate.settings import Settings
from tests.conftest import Api

LEASE_MS = 600


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(persister_lease_ms=LEASE_MS)


async def _hold_leases_without_consuming(persister: Persister, seconds: float) -> None:
    """Renew membership and leases (as a live persister does) and read nothing."""
    until = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < until:
        await persister._leases.refresh(force=True)
        await asyncio.sleep(0.05)


async def _partition_with_events(api: Api, persister: Persister) -> int:
    await persister.drain()
    status, body = await api.call("POST", "/v1/invites", json={"code": "STALL", "max_uses": 0})
    assert status == 201, body
    lag = await persister.lag()
    (p,) = [p for p, n in lag.items() if n]
    return p


@pytest.mark.cluster
async def test_a_leased_partition_nobody_reads_is_not_ready(api: Api, persister: Persister) -> None:
    p = await _partition_with_events(api, persister)
    await _hold_leases_without_consuming(persister, 3 * LEASE_MS / 1000)
    status, body = await api.call("GET", "/readyz", headers={})
    assert (status, body["unpersisted_partitions"], body["status"]) == (503, [p], "unavailable"), body
    await persister.drain()
    status, body = await api.call("GET", "/readyz", headers={})
    assert (status, body["unpersisted_partitions"]) == (200, []), body


@pytest.mark.cluster
async def test_a_leased_partition_with_a_batch_never_acknowledged_is_not_ready(
        api: Api, persister: Persister) -> None:
    p = await _partition_with_events(api, persister)
    log = persister._keys.log(p)
    delivered = await persister._redis.xreadgroup(GROUP, persister.name, {log: ">"}, count=100)
    assert delivered  # read, and then 'lost': never applied nor acknowledged
    await _hold_leases_without_consuming(persister, 3 * LEASE_MS / 1000)
    status, body = await api.call("GET", "/readyz", headers={})
    assert (status, body["unpersisted_partitions"]) == (503, [p]), body
    await persister.drain(timeout_s=30)  # claims the batch back after a lease
    assert persister.stats.reclaimed > 0
    status, body = await api.call("GET", "/readyz", headers={})
    assert (status, body["unpersisted_partitions"]) == (200, []), body
