"""Retries, idempotency keys and timeouts, through a faulty proxy in front of the live server."""

from __future__ import annotations

import time
import uuid

import pytest

from dropgate.client import (
    AlreadyUsed,
    AsyncDropgate,
    ConnectionFailed,
    DropgateError,
    IdempotencyKeyInUse,
    NotFound,
    PersistenceLagging,
    RateLimited,
    Timeout,
    Unavailable,
)
from dropgate.client.transport import RetryPolicy, parse_retry_after
from tests.client.conftest import Canned, FaultyProxy, TenantAccess, free_port

FAST = {"backoff": 0.01, "max_backoff": 0.05}


def _keys(seen: list[object]) -> list[str | None]:
    return [s.headers.get("Idempotency-Key") for s in seen]  # type: ignore[attr-defined]


async def test_redeem_after_503s_reaches_the_server_once_with_one_idempotency_key(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("R1", max_uses=10)
    proxy.fail_first(3, code="TENANT_BUSY")  # a 503 the server answers before any change
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        redemption = await client.invites.redeem("R1", user_id="u1")
    assert redemption.used_count == 1
    assert len(proxy.seen) == 4 and len(proxy.forwarded) == 1
    keys = _keys(proxy.seen)
    assert keys[0] and len(set(keys)) == 1, keys  # one key, kept across every attempt
    assert proxy.forwarded[0].headers["Idempotency-Key"] == keys[0]
    assert len({s.headers["X-Request-Id"] for s in proxy.seen}) == 1
    assert (await dg.invites.get("R1")).used_count == 1  # one redemption in the end


async def test_an_ambiguous_503_is_not_retried_for_a_post_the_server_does_not_replay(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    """UNAVAILABLE may come from a Redis timeout after the script ran: resending a POST
    the server does not replay by key (an invite's creation) could apply it twice, so
    it is raised."""
    proxy.fail_first(1, code="UNAVAILABLE")
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        with pytest.raises(Unavailable):
            await client.invites.create("R1b", max_uses=10)
    assert len(proxy.seen) == 1
    with pytest.raises(NotFound):  # the canned 503 never reached it
        await dg.invites.get("R1b")


async def test_an_ambiguous_503_is_retried_for_a_post_the_server_replays(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    """An invite redemption replays by key: the retry carries the same key, so it
    applies once whether or not the first attempt reached the server."""
    await dg.invites.create("R1c", max_uses=10)
    proxy.fail_first(1, code="UNAVAILABLE")
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        assert (await client.invites.redeem("R1c", user_id="u1")).used_count == 1
    assert len(proxy.seen) == 2 and len(set(_keys(proxy.seen))) == 1
    assert (await dg.invites.get("R1c")).used_count == 1


async def test_retries_run_out_and_raise_the_last_error(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("R2", max_uses=10)
    proxy.fail_first(10, code="PERSISTENCE_LAGGING")
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=2, **FAST) as client:
        with pytest.raises(PersistenceLagging):
            await client.invites.redeem("R2", user_id="u1")
    assert len(proxy.seen) == 3 and not proxy.forwarded
    assert (await dg.invites.get("R2")).used_count == 0


async def test_every_logical_call_has_its_own_key_and_a_given_key_is_sent_as_is(
        proxy: FaultyProxy, tenant: TenantAccess) -> None:
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=0) as client:
        await client.invites.create("K", max_uses=0)
        await client.invites.redeem("K", user_id="a")
        await client.invites.redeem("K", user_id="b", idempotency_key="my-key-1")
        await client.invites.get("K")
        await client.invites.update("K", active=True)
    keys = _keys(proxy.seen)
    assert keys[0] and keys[1] and keys[0] != keys[1]
    assert keys[2] == "my-key-1"
    assert keys[3] is None and keys[4] is None  # GET and PATCH repeat safely without one


async def test_429_waits_for_retry_after_then_succeeds(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("R3", max_uses=10)
    proxy.canned = [Canned.error(429, "RATE_LIMITED", details={"retry_after_s": 1},
                                 headers={"Retry-After": "1"})]
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=2, **FAST) as client:
        started = time.monotonic()
        await client.invites.redeem("R3", user_id="u1")
        waited = time.monotonic() - started
    assert waited >= 1.0, waited  # backoff alone would be ~0.01 s
    assert len(proxy.seen) == 2 and len(set(_keys(proxy.seen))) == 1


async def test_retry_after_beyond_the_limit_is_raised_at_once(proxy: FaultyProxy, tenant: TenantAccess) -> None:
    proxy.canned = [Canned.error(429, "RATE_LIMITED", headers={"Retry-After": "120"})]
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, max_retry_after=30, **FAST) as client:
        with pytest.raises(RateLimited) as info:
            await client.invites.get("ANY")
    assert info.value.retry_after == 120.0
    assert len(proxy.seen) == 1


async def test_503_retry_after_header_is_honoured(proxy: FaultyProxy, tenant: TenantAccess,
                                                  dg: AsyncDropgate) -> None:
    await dg.invites.create("R4", max_uses=1)
    proxy.canned = [Canned(503, b"busy", {"Retry-After": "1"})]
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=1, **FAST) as client:
        started = time.monotonic()
        assert (await client.invites.get("R4")).code == "R4"
        assert time.monotonic() - started >= 1.0


async def test_refusals_are_not_retried(proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("R5", max_uses=10)
    await dg.invites.redeem("R5", user_id="u1")
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        with pytest.raises(AlreadyUsed):
            await client.invites.redeem("R5", user_id="u1")
    assert len(proxy.seen) == 1


async def test_key_in_use_on_a_retry_waits_for_the_first_attempt(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("R6", max_uses=10)
    proxy.canned = [Canned.error(503, "PERSISTENCE_LAGGING"), Canned.error(409, "IDEMPOTENCY_KEY_IN_USE")]
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        assert (await client.invites.redeem("R6", user_id="u1")).used_count == 1
    assert len(proxy.seen) == 3 and len(set(_keys(proxy.seen))) == 1
    # on a first attempt the key is someone else's call still running: not ours to wait for
    proxy.seen.clear()
    proxy.canned = [Canned.error(409, "IDEMPOTENCY_KEY_IN_USE")]
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=3, **FAST) as client:
        with pytest.raises(IdempotencyKeyInUse):
            await client.invites.redeem("R6", user_id="u2", idempotency_key="shared")
    assert len(proxy.seen) == 1


async def test_a_dropped_connection_is_retried_with_the_same_key(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("R7", max_uses=10)
    # a read: the answer is lost after the server sent it; the repeat is harmless
    proxy.drop_after_forward_first = 1
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=2, **FAST) as client:
        assert (await client.invites.get("R7")).code == "R7"
    assert len(proxy.forwarded) == 2
    # a creation whose answer is lost: the server applied it once. Invite creation is
    # not replayed by key on the server, so resending could apply it twice (a payment
    # would be charged twice): the client raises instead of guessing.
    proxy.seen.clear()
    proxy.forwarded.clear()
    proxy.drop_after_forward_first = 1
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=2, **FAST) as client:
        with pytest.raises(ConnectionFailed):
            await client.invites.create("R7b", max_uses=10)
    assert len(proxy.forwarded) == 1
    assert (await dg.invites.get("R7b")).code == "R7b"
    # a redemption whose answer is lost is replayed by key: resent with the same key,
    # answered the first result, applied once
    proxy.seen.clear()
    proxy.forwarded.clear()
    proxy.drop_after_forward_first = 1
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=2, **FAST) as client:
        assert (await client.invites.redeem("R7", user_id="u1")).used_count == 1
    assert len(proxy.forwarded) == 2 and len(set(_keys(proxy.forwarded))) == 1
    assert (await dg.invites.get("R7")).used_count == 1


async def test_a_slow_answer_times_out_and_the_retry_succeeds(
        proxy: FaultyProxy, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.invites.create("T1", max_uses=10)
    proxy.delay_first, proxy.delay_s = 1, 2.0
    async with AsyncDropgate(proxy.url, tenant.service_key, timeout=0.5, retries=1, **FAST) as client:
        started = time.monotonic()
        assert (await client.invites.get("T1")).code == "T1"
        assert time.monotonic() - started < 1.8


async def test_timeouts_raise_timeout_after_the_retries(proxy: FaultyProxy, tenant: TenantAccess) -> None:
    proxy.delay_first, proxy.delay_s = 10, 2.0
    async with AsyncDropgate(proxy.url, tenant.service_key, timeout=0.3, retries=1, **FAST) as client:
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            await client.invites.get("T2")
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 1.5, elapsed
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, DropgateError)
    assert len(proxy.seen) == 2


async def test_an_unreachable_server_raises_connection_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncDropgate(url, "k", retries=2, **FAST) as client:
        with pytest.raises(ConnectionFailed) as info:
            await client.invites.redeem("X", user_id="u1")
    assert isinstance(info.value, ConnectionError) and info.value.code == "CONNECTION_FAILED"


async def test_unavailable_from_the_server_is_retried(proxy: FaultyProxy, tenant: TenantAccess) -> None:
    proxy.fail_first(1)
    async with AsyncDropgate(proxy.url, tenant.service_key, retries=0, **FAST) as client:
        with pytest.raises(Unavailable):
            await client.invites.get("X")
    assert len(proxy.seen) == 1  # retries=0: one attempt


def test_backoff_grows_with_jitter_up_to_its_ceiling() -> None:
    policy = RetryPolicy(backoff_s=0.1, max_backoff_s=1.0)
    for attempt, ceiling in ((0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (10, 1.0)):
        delays = {policy.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert uuid.UUID(__import__("dropgate.client").client.new_idempotency_key())
