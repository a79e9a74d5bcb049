"""Redis Cluster as dropgate's store: the URL, /readyz, keys spread over the masters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient

from dropgate.engine.redisclient import RedisUrlError, cluster_seeds, is_cluster, primaries
from dropgate.errors import Conflict
from dropgate.http.app import create_app
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.apiserver import ApiServer
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import create_offer, fake_stripe, pg_offer, purchase, stripe_settings
from tests.support.redis_cluster import LocalCluster

__all__ = ["fake_stripe"]


def test_cluster_url_names_its_seed_nodes() -> None:
    assert cluster_seeds("redis+cluster://a:7000,b:7001") == [("a", 7000), ("b", 7001)]
    assert cluster_seeds("redis+cluster://u:pw@[::1]:7000") == [("::1", 7000)]
    with pytest.raises(RedisUrlError, match=r"^DROPGATE_REDIS_URL: cluster seed 'b' is not host:port"):
        cluster_seeds("redis+cluster://a:7000,b")
    with pytest.raises(RedisUrlError, match=r"^DROPGATE_REDIS_URL: cluster seed 'b:7²' is not host:port"):
        cluster_seeds("redis+cluster://a:7000,b:7²")


@pytest.mark.parametrize("redis_kind", ["cluster"])
async def test_readyz_reports_every_masters_cluster_state(api: Api, runtime: Runtime,
                                                          persister: Persister) -> None:
    assert is_cluster(runtime.redis)
    await persister.drain()  # ready needs a persister holding every partition with events
    status, body = await api.call("GET", "/readyz", headers={})
    assert status == 200, body
    assert body["redis"] is True
    assert len(body["redis_cluster"]) == 3 and set(body["redis_cluster"].values()) == {"ok"}


@pytest.mark.parametrize("redis_kind", ["cluster"])
async def test_partitions_spread_over_the_masters(api: Api, runtime: Runtime) -> None:
    """Each partition's log lives on the master of its slot: the 4 test partitions are
    not all on one master."""
    for p in range(runtime.keys.partitions):
        await runtime.redis.xadd(runtime.keys.log(p), {"probe": "1"})
    holders = []
    for node in await primaries(runtime.redis):
        found = [key async for key in node.scan_iter(match=f"{runtime.keys.prefix}:*:log", count=100)]
        holders.append(len(found))
    assert sum(holders) == runtime.keys.partitions
    assert sum(1 for n in holders if n) >= 2, holders


def test_a_malformed_cluster_url_is_one_line_naming_the_setting() -> None:
    from dropgate.settings import ConfigError, from_env

    with pytest.raises(ConfigError) as err:
        from_env({"DROPGATE_REDIS_URL": "redis+cluster://a:7000,b"})
    assert str(err.value) == ("DROPGATE_REDIS_URL must list cluster seeds as host:port[,host:port...], "
                              "got 'b'")
    with pytest.raises(ConfigError) as err:
        from_env({"DROPGATE_REDIS_URL": "redis+cluster://a:7000,b:700²"})
    assert str(err.value).endswith("got 'b:700²'")
    assert from_env({"DROPGATE_REDIS_URL": "redis+cluster://a:7000,b:7001"}).redis_url


@pytest.mark.parametrize("redis_kind", ["cluster"])
async def test_redis_wait_answers_after_a_replica_has_the_purchase(
        make_settings: Callable[..., Settings], fake_stripe: FakeStripe, isolated: str,
        redis_url: str) -> None:
    """DROPGATE_REDIS_WAIT=1: each purchase batch is WAITed for on its own connection;
    every one was acknowledged by a replica (none counted unreplicated)."""


    settings = stripe_settings(make_settings, fake_stripe, redis_wait=1, redis_wait_timeout_ms=2000,
                               stripe_timeout_s=10.0)
    async with open_runtime(settings, run_persister=False) as rt:
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            await create_offer(api, "waited", 50)
            results = await asyncio.gather(*(purchase(api, "waited", f"u{i}", 1) for i in range(80)))
            assert sorted(s for s, _ in results) == [201] * 50 + [409] * 30
            assert rt.scripts.unreplicated == 0
            rt.scripts.wait_replicas, rt.scripts.wait_timeout_ms = 2, 50  # one replica each
            assert (await purchase(api, "waited", "u-late", 1))[0] == 409
            assert rt.scripts.unreplicated >= 1  # WAIT ran out: answered, and counted
            persister = rt.new_persister(name="wait-test")
            await persister.drain()
            assert (await pg_offer(rt, "acme", "waited"))["purchases"] == 50
        finally:
            await client.close()


@pytest.mark.parametrize("redis_kind", ["cluster"])
async def test_an_evicting_master_anywhere_in_the_cluster_is_refused(
        make_settings: Callable[..., Settings], isolated: str, redis_cluster: LocalCluster) -> None:
    node = redis_cluster.masters()[-1].client()
    node.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(Conflict, match="maxmemory-policy is allkeys-lru"):
            async with open_runtime(make_settings(), run_persister=False):
                pass
    finally:
        node.config_set("maxmemory-policy", "noeviction")
