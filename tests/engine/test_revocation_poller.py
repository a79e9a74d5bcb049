"""Revocation without a wait on the hot path (#21 item 2), on a real Redis: each serving
process's poller acknowledges the revocation version in Redis; revoke answers once every
process has acknowledged it or its record is older than the lease; a process whose poller
stalls reads the version per request, so a revoked key is refused at once there too.

A second ``ApiKeys`` on the runtime's context stands for another serving process: its
own cache, its own poller and its own record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from dropgate.engine.apikeys import ApiKeys
from dropgate.engine.revocations import RevocationClock
from dropgate.runtime import Runtime

_LEASE_MS = 1_000


def _process(runtime: Runtime, *, poll_ms: int = 20, scripts: bool = True) -> ApiKeys:
    keys = ApiKeys(runtime.api_keys._ctx)
    ctx = runtime.api_keys._ctx
    keys.clock = RevocationClock(ctx.redis, ctx.keys, ctx.scripts if scripts else None,
                                 poll_ms=poll_ms, lease_ms=_LEASE_MS)
    return keys


async def _polled(keys: ApiKeys) -> None:
    """Until the process's poller has a fresh view (the first authenticate starts it)."""
    deadline = time.monotonic() + 5
    while keys.clock.view() is None:
        assert time.monotonic() < deadline, "the poller never polled"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _victim_polled_by(runtime: Runtime, revoker: ApiKeys) -> AsyncIterator[tuple[ApiKeys, str, str]]:
    """Another process, and a key it has served and polled for: (process, key id,
    token). Both processes are closed after."""
    other = _process(runtime)
    key_id, token = await runtime.api_keys.create(role="service", tenant_id="acme", name="victim")
    try:
        assert await other.authenticate(token) is not None
        await _polled(other)
        yield other, key_id, token
    finally:
        await other.close()
        await revoker.close()


async def _counting_reads(keys: ApiKeys, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    real = keys.clock.read

    async def read(partition: int) -> int:
        reads.append(partition)
        return await real(partition)

    monkeypatch.setattr(keys.clock, "read", read)
    return reads


@pytest.mark.cluster
async def test_revoke_waits_for_a_paused_poller_until_it_acknowledges(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoker = _process(runtime)
    async with _victim_polled_by(runtime, revoker) as (other, key_id, token):
        reads = await _counting_reads(other, monkeypatch)
        assert await other.authenticate(token) is not None
        assert reads == []  # the hot path: the poller's view, no per-request read
        other.clock.paused = True  # a poller that does not get to run
        revoke = asyncio.create_task(revoker.revoke(key_id))
        await asyncio.sleep(0.3)
        assert not revoke.done()  # the paused process has not acknowledged: no answer yet
        other.clock.paused = False
        started = time.monotonic()
        await asyncio.wait_for(revoke, 2)
        assert time.monotonic() - started < _LEASE_MS / 2000  # answered on the ack, not the lease
        assert await other.authenticate(token) is None


async def test_revoke_waits_for_a_stalled_poller_one_lease_at_most_and_it_reads_per_request(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoker = _process(runtime)
    async with _victim_polled_by(runtime, revoker) as (other, key_id, token):
        other.clock.paused = True  # stalled for good (a GC pause, a lost Redis, a dead process)
        started = time.monotonic()
        await revoker.revoke(key_id)
        waited = time.monotonic() - started
        assert 0.5 * _LEASE_MS / 1000 < waited < _LEASE_MS / 1000 + 1.0
        reads = await _counting_reads(other, monkeypatch)
        assert await other.authenticate(token) is None  # refused at once: its view is stale
        assert reads  # ... because it read the version itself
        assert other.clock.polls > 0 and other.clock.view() is None
        records = await runtime.api_keys._ctx.redis.hgetall(
            runtime.api_keys._ctx.keys.api_key_pollers(runtime.api_keys._ctx.keys.api_key(key_id)[0]))
        assert records == {}  # the stale record was removed by the revoke


async def test_a_process_whose_poller_stalled_refuses_a_revoked_key_at_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even against a revoke that waited for nobody (a clock without records), the
    stalled process refuses the key: past half a lease it no longer trusts its view."""
    careless = _process(runtime, scripts=False)
    async with _victim_polled_by(runtime, careless) as (other, key_id, token):
        other.clock.paused = True
        await asyncio.sleep(_LEASE_MS / 2000 + 0.05)
        assert other.clock.view() is None
        reads = await _counting_reads(other, monkeypatch)
        assert await other.authenticate(token) is not None  # nothing revoked yet: served, read
        assert len(reads) == 1
        await careless.revoke(key_id)  # bumps the version, waits for no one
        assert await other.authenticate(token) is None
        other.clock.paused = False
        await _polled(other)
        assert await other.authenticate(token) is None


async def test_a_closed_process_removes_its_records(runtime: Runtime) -> None:
    other = _process(runtime)
    _, token = await runtime.api_keys.create(role="service", tenant_id="acme", name="victim")
    assert await other.authenticate(token) is not None
    await _polled(other)
    ctx = runtime.api_keys._ctx
    pollers = [ctx.keys.api_key_pollers(p) for p in range(ctx.keys.partitions)]
    assert all([await ctx.redis.hlen(k) == 1 for k in pollers])
    await other.close()
    assert all([await ctx.redis.hlen(k) == 0 for k in pollers])
    assert other.clock.view() is None


def test_the_lease_must_be_ten_polls_at_least() -> None:
    from dropgate.settings import ConfigError, from_env

    assert from_env({"DROPGATE_REVOCATION_POLL_MS": "100", "DROPGATE_REVOCATION_LEASE_MS": "1000"})
    with pytest.raises(ConfigError, match="DROPGATE_REVOCATION_LEASE_MS must be at least 10 times"):
        from_env({"DROPGATE_REVOCATION_POLL_MS": "200", "DROPGATE_REVOCATION_LEASE_MS": "1000"})
    with pytest.raises(ConfigError, match="DROPGATE_REVOCATION_POLL_MS"):
        from_env({"DROPGATE_REVOCATION_POLL_MS": "1"})


async def test_revoke_honours_a_process_with_a_longer_lease(runtime: Runtime) -> None:
    """A record written under a longer lease than the revoker's is waited for that long."""
    ctx = runtime.api_keys._ctx
    revoker = _process(runtime)
    key_id, _ = await runtime.api_keys.create(role="service", tenant_id="acme", name="victim")
    p = ctx.keys.api_key(key_id)[0]
    now_s, now_us = await ctx.redis.time()
    ms = now_s * 1000 + now_us // 1000
    await ctx.redis.hset(ctx.keys.api_key_pollers(p), "long", f"-1 {ms - 1_500} 3000")
    await ctx.redis.hset(ctx.keys.api_key_pollers(p), "short", f"-1 {ms - 1_500} 1000")
    started = time.monotonic()
    await revoker.revoke(key_id)
    assert 1.2 < time.monotonic() - started < 2.5  # "short" stale at once, "long" after 1.5 s
    assert await ctx.redis.hgetall(ctx.keys.api_key_pollers(p)) == {}
    await revoker.close()


async def _closes(keys: ApiKeys | RevocationClock) -> None:
    """``close()`` returns (the bound only keeps a hang from stalling the suite)."""
    closing = asyncio.create_task(keys.close())
    done, _ = await asyncio.wait([closing], timeout=30)
    if not done:
        closing.cancel()
    assert done, "close() did not return"
    await closing


async def test_a_cancel_swallowed_inside_a_poll_still_stops_the_poller(runtime: Runtime) -> None:
    """Python 3.11's ``asyncio.wait_for`` (redis-py sends every command through it) returns
    the inner call's result and drops the cancel when both land in the same loop pass. A
    poller that only ended on CancelledError then polled on, and ``close()`` awaited it
    forever: the fresh-clone CI hang of the first landing."""
    other = _process(runtime)
    swallowing = asyncio.Event()
    polls_after = 0
    real = other.clock.poll

    async def poll(applied: list[int], ttl: str) -> list[int]:
        nonlocal polls_after
        if swallowing.is_set():
            polls_after += 1
            return await real(applied, ttl)
        swallowing.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # what wait_for does when its inner call has just finished
        return [0] * runtime.keys.partitions

    other.clock.poll = poll  # type: ignore[method-assign]
    assert other.clock.view() is None  # starts the poller
    poller = other.clock._poller
    assert poller is not None
    await swallowing.wait()
    await _closes(other)
    assert poller.done() and polls_after == 0
    assert other.clock.view() is None and other.clock._poller is None


async def test_nothing_starts_after_close_and_reads_still_answer(runtime: Runtime) -> None:
    other, careless = _process(runtime), _process(runtime, scripts=False)
    key_id, token = await runtime.api_keys.create(role="service", tenant_id="acme", name="victim")
    assert await other.authenticate(token) is not None
    await _polled(other)
    await _closes(other)
    before = asyncio.all_tasks()
    assert other.clock.view() is None  # no poller started again (it used to be)
    await careless.revoke(key_id)
    assert await other.authenticate(token) is None  # read directly: still immediate
    assert other.clock._poller is None and other.clock._task is None
    assert asyncio.all_tasks() == before
    ctx = runtime.api_keys._ctx
    assert [await ctx.redis.hlen(ctx.keys.api_key_pollers(p)) for p in range(ctx.keys.partitions)] \
        == [0] * ctx.keys.partitions
    await careless.close()


async def test_close_returns_when_the_pool_has_no_connection_to_give(runtime: Runtime) -> None:
    """Removing the records waits for a connection at most a lease (the pool alone would
    wait DROPGATE_REDIS_POOL_WAIT_S, here an hour): past a lease nobody waits for them."""
    from dropgate.engine.redisclient import connect
    from dropgate.engine.scripts import Scripts

    redis = connect(runtime.redis_url, max_connections=2, timeout_s=5, pool_wait_s=3600)
    clock = RevocationClock(redis, runtime.keys, Scripts(redis), poll_ms=20, lease_ms=200)
    held = []
    try:
        assert clock.view() is None
        deadline = time.monotonic() + 5
        while clock.view() is None:
            assert time.monotonic() < deadline, "the poller never polled"
            await asyncio.sleep(0.01)
        pool = redis.connection_pool
        held = [await pool.get_connection(), await pool.get_connection()]  # the poller waits
        await _closes(clock)
        assert clock._poller is None and clock.view() is None
    finally:
        for connection in held:
            await redis.connection_pool.release(connection)
        await redis.aclose()


async def test_a_poll_cancelled_while_its_scripts_load_gives_its_connection_back(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py checks a pipeline's scripts (SCRIPT EXISTS, on a connection it takes from
    the pool) before the part of ``execute`` that returns the connection; a poll cancelled
    there (a close mid-poll) left the connection out of the pool, and the collector later
    reported it as an unclosed pipeline in whatever test ran then."""
    from redis.asyncio.client import Pipeline

    from dropgate.engine.redisclient import connect
    from dropgate.engine.scripts import Scripts

    loading = asyncio.Event()
    load_scripts = Pipeline.load_scripts

    async def stuck_after_loading(self: Pipeline) -> None:
        await load_scripts(self)  # the connection is the pipeline's now
        loading.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(Pipeline, "load_scripts", stuck_after_loading)
    redis = connect(runtime.redis_url, max_connections=4, timeout_s=5, pool_wait_s=5)
    clock = RevocationClock(redis, runtime.keys, Scripts(redis), poll_ms=20, lease_ms=200)
    try:
        poll = asyncio.create_task(clock.poll([0] * runtime.keys.partitions, "2000"))
        await asyncio.wait_for(loading.wait(), 5)
        pool = redis.connection_pool
        assert len(pool._in_use_connections) == 1  # the poll's
        poll.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poll
        assert len(pool._in_use_connections) == 0
    finally:
        await redis.aclose()
