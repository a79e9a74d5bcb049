"""Restore: Redis rebuilt from PostgreSQL serves as before; a live keyspace is refused."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from dropgate.embedded import redis_server_binary
from dropgate.engine.keys import Keys
from dropgate.engine.keyspace import delete_prefix
from dropgate.engine.revocations import revocations_floor
from dropgate.engine.scripts import Scripts
from dropgate.errors import AlreadyUsed, Conflict, Exhausted
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import KeyspaceNotEmpty, restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.persistence.test_reconcile import _drained, _drop


async def _wipe(runtime: Runtime) -> int:
    """Redis lost: delete every key of this test's prefix (only those)."""
    return await delete_prefix(runtime.redis, runtime.keys.prefix)


@pytest.mark.cluster
async def test_restore_after_redis_was_lost_serves_as_before(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime, users=300)
    await _drained(persister)
    before = {(c, (await runtime.invites.get("t1", c)).used_count) for c in ("A", "B", "C", "D")}
    assert await _wipe(runtime) > 0
    result = await restore(runtime)
    assert result.restored == {"core/tenant": 2, "core/apikey": 2, "invites/invite": 8, "codes/codes": 0,
                               "promos/promo": 0, "offers/offer+purchase": 0,
                               "ledger/balance+withdrawal+order+slot": 0}
    assert {(c, (await runtime.invites.get("t1", c)).used_count) for c in ("A", "B", "C", "D")} == before
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts
    # the drop continues: old users are refused, new ones counted on from the restored state
    with pytest.raises(AlreadyUsed):
        await runtime.invites.redeem("t1", "A", user_id="u0")
    used = await runtime.invites.redeem("t1", "A", user_id="new-user")
    assert used == dict(before)["A"] + 1
    d = await runtime.invites.get("t1", "D")
    for i in range(d.max_uses - d.used_count):
        await runtime.invites.redeem("t1", "D", user_id=f"late{i}")
    with pytest.raises(Exhausted):
        await runtime.invites.redeem("t1", "D", user_id="one-too-many")
    successor = runtime.new_persister(name="after-restore")
    await _drained(successor)
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
    assert await runtime.pool.fetchval(
        "SELECT used_count FROM invite_codes WHERE tenant_id = 't1' AND code = 'D'") == d.max_uses


async def test_a_running_servers_revocation_records_do_not_block_a_restore(
        runtime: Runtime, persister: Persister) -> None:
    """A server that keeps running while Redis is lost writes its revocation poll record
    (and may bump a revocation version) into the fresh keyspace within 50 ms: bookkeeping,
    not state, so ``restore`` proceeds (the fault lab's lost-Redis run was refused: "4
    state keys")."""
    await _drop(runtime, users=20)
    await _drained(persister)
    await _wipe(runtime)
    for p in range(runtime.keys.partitions):
        await runtime.redis.hset(runtime.keys.api_key_pollers(p), "host-1-abc", "0 1764892800000")
    await runtime.redis.incr(runtime.keys.api_key_revocations(0))
    result = await restore(runtime)
    assert result.restored["invites/invite"] == 8
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_restore_refuses_a_live_keyspace_unless_forced(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime, users=40)
    with pytest.raises(KeyspaceNotEmpty) as refused:
        await restore(runtime)
    assert refused.value.state_keys > 0 and refused.value.backlog > 0
    await runtime.redis.hset(runtime.keys.tenant("t1").invite("A"), "used_count", 1000)  # damage
    forced = await restore(runtime, force=True)  # replays the log first, then overwrites
    assert forced.replayed_events > 0
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_restore_scripts_keep_absolute_expiry_and_respect_the_version_guard(runtime: Runtime) -> None:
    key = runtime.keys.tenant("t1").base + ":hold:h1"
    now_ms = int((await runtime.redis.time())[0]) * 1000
    args = ["-", "replace", now_ms + 60_000, "qty", 2, "version", 3]
    assert (await runtime.scripts.call("restore_hash", [key], args))["restored"] is True
    assert 55_000 < await runtime.redis.pttl(key) <= 60_000
    refused = await runtime.scripts.call("restore_hash", [key], ["2", "replace", "", "qty", 9])
    assert refused == {"restored": False, "version": 3}
    assert (await runtime.scripts.call("restore_hash", [key], ["3", "merge", "", "qty", 5]))["restored"]
    assert await runtime.redis.hget(key, "qty") == b"5"
    staging = Keys.staging(key + ":z")
    await runtime.scripts.call("restore_members", [staging], ["1", "zset", now_ms + 5000, "r1", now_ms + 9000, "r2"])
    assert await runtime.redis.zrange(staging, 0, -1, withscores=True) == [
        (b"r1", float(now_ms + 5000)), (b"r2", float(now_ms + 9000))]


@pytest.fixture
async def evicting_redis() -> AsyncIterator[str]:
    """A private redis-server configured with an evicting maxmemory-policy."""
    folder = Path(tempfile.mkdtemp(prefix="dg-evict-", dir="/tmp"))
    sock = folder / "r.sock"
    proc = subprocess.Popen([redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
                            stdout=subprocess.DEVNULL)
    client = Redis(unix_socket_path=str(sock))
    try:
        for _ in range(250):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait(10)


async def test_dropgate_refuses_an_evicting_redis(evicting_redis: str, isolated: str,
                                                  make_settings: object) -> None:
    assert callable(make_settings)
    settings: Settings = make_settings(redis_url=evicting_redis)
    with pytest.raises(Conflict, match="maxmemory-policy is allkeys-lru"):
        async with open_runtime(settings):
            pass
    client = Redis.from_url(evicting_redis)
    try:
        await client.config_set("maxmemory-policy", "noeviction")
    finally:
        await client.aclose()
    async with open_runtime(settings) as runtime:  # the same server, fixed: accepted
        assert isinstance(runtime.scripts, Scripts)


async def test_a_running_persister_carries_on_after_redis_is_lost_and_restored(
        runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime, users=100)
    task = asyncio.create_task(persister.run())
    try:
        while sum((await persister.lag()).values()):
            await asyncio.sleep(0.02)
        await _wipe(runtime)  # streams and consumer groups gone with everything else
        await restore(runtime)
        for i in range(50):
            await runtime.invites.redeem("t2", "B", user_id=f"after-{i}")
        deadline = asyncio.get_running_loop().time() + 30
        while await runtime.pool.fetchval("SELECT count(*) FROM invite_code_uses WHERE user_id LIKE 'after-%'") < 50:
            assert asyncio.get_running_loop().time() < deadline, persister.stats
            await asyncio.sleep(0.05)
    finally:
        await persister.close()
        await asyncio.wait_for(task, 10)
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


@pytest.mark.cluster
async def test_one_tenant_is_restored_beside_the_others(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime, users=80)
    await _drained(persister)
    tk = runtime.keys.tenant("t2")
    lost = [k async for k in runtime.redis.scan_iter(match=f"{tk.tag}:t:t2:*")] + [tk.tenant()]
    await runtime.redis.delete(*lost)
    await runtime.invites.redeem("t1", "A", user_id="meanwhile")  # t1's traffic goes on (unpersisted)
    result = await restore(runtime, tenant_id="t2")
    assert result.restored["invites/invite"] == 4 and result.restored["core/tenant"] == 1
    with pytest.raises(KeyspaceNotEmpty):
        await restore(runtime, tenant_id="t2")  # now its keys exist again
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_after_a_restore_a_revoke_waits_a_lease_for_the_processes_whose_records_were_lost(
        runtime: Runtime) -> None:
    """A process that kept running through the loss of Redis has no poll record until its
    next poll, yet may trust its view until then: the floor leaves a ``restore`` record,
    behind every version, that revoke waits for until it is older than the lease (when
    every such process has polled again or reads per request). Without it a revoke right
    after a restore returned at once and the embedded-store suite saw a revoked key served."""
    lease = runtime.settings.revocation_lease_ms
    await revocations_floor(runtime.scripts, runtime.keys)
    for p in range(runtime.keys.partitions):
        pollers = runtime.keys.api_key_pollers(p)
        version, at, own = (await runtime.redis.hget(pollers, "restore")).split()
        assert (int(version), int(own)) == (-1, 0)
        assert await runtime.scripts.call("apikey_revoke_wait", [pollers], [2**53, lease], type=int) == 1
        # a lease later it no longer holds revokes, and goes
        await runtime.redis.hset(pollers, "restore", f"-1 {int(at) - lease - 1} 0")
        assert await runtime.scripts.call("apikey_revoke_wait", [pollers], [2**53, lease], type=int) == 0
        assert not await runtime.redis.hexists(pollers, "restore")


async def test_a_key_revoked_after_a_restore_is_refused_by_a_server_that_kept_running(
        runtime: Runtime, persister: Persister) -> None:
    """A server keeps running through the loss of Redis with a key's answer cached under
    version 5 of its partition. Lost, the versions restart at 0; a revoke after the
    restore makes it 1, and a hit is trusted while its version is >= the current one, so
    without ``revocations_floor`` the revoked key was still served from the cache."""
    from tests.engine.test_revocation_poller import _polled, _process

    for p in range(runtime.keys.partitions):  # earlier revokes in this partition's history
        await runtime.redis.set(runtime.keys.api_key_revocations(p), 5)
    key_id, token = await runtime.api_keys.create(role="service", tenant_id="acme", name="victim")
    server = _process(runtime)
    try:
        assert await server.authenticate(token) is not None  # cached under version 5
        await _polled(server)
        await _drained(persister)
        await _wipe(runtime)
        await restore(runtime)
        versions = [int(await runtime.redis.get(runtime.keys.api_key_revocations(p)) or 0)
                    for p in range(runtime.keys.partitions)]
        assert min(versions) > 1_000_000_000_000  # Redis's clock in ms
        await runtime.api_keys.revoke(key_id)
        assert await server.authenticate(token) is None
    finally:
        await server.close()
