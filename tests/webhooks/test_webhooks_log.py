"""The dispatcher on the partition logs: trimming waits for both groups, a dispatcher
far behind spills to PostgreSQL and resumes, two dispatchers share the work, and a
crowd of purchases gives each event exactly one recorded delivery."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.offers import create_offer, purchase
from tests.support.webhooks import Receiver, receiver, register, until, webhook_settings

__all__ = ["receiver"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, webhook_spill_after=5, dispatcher_batch_size=3,
                            dispatcher_lease_ms=1000)


async def _log_length(runtime: Runtime) -> int:
    return sum([int(await runtime.redis.xlen(runtime.keys.log(p))) for p in range(runtime.keys.partitions)])


async def _redeems(api: Api, code: str, n: int) -> None:
    status, body = await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 10_000})
    assert status == 201, body
    for i in range(n):
        status, body = await api.call("POST", f"/v1/invites/{code}/redeem", json={"user_id": f"u{i}"})
        assert status == 200, body


async def test_trim_waits_for_both_groups(api: Api, runtime: Runtime, persister: Persister,
                                          receiver: Receiver) -> None:
    await register(api, receiver, ["invite.redeemed"])
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.run_once()  # its group exists from here on
        await persister.run_once()
        await dispatcher.run_once()
        await persister.run_once()
        assert await _log_length(runtime) == 0
        await _redeems(api, "T", 4)
        written = await _log_length(runtime)
        assert written >= 5  # the invite and its four uses
        await persister.run_once()  # applied, but the dispatcher has not read them
        assert await _log_length(runtime) == written
        assert receiver.accepted == []
        while await dispatcher.behind():
            await dispatcher.run_once()
        assert len(receiver.accepted) == 4
        assert await _log_length(runtime) == 0  # now both are past every entry
        await _redeems(api, "T2", 2)
        written = await _log_length(runtime)
        while await dispatcher.behind():
            await dispatcher.run_once()
        assert await _log_length(runtime) == written  # the persister has not applied them yet
        await persister.run_once()
        assert await _log_length(runtime) == 0
    finally:
        await dispatcher.aclose()


async def test_far_behind_spills_to_postgres_and_resumes(api: Api, runtime: Runtime, persister: Persister,
                                                         receiver: Receiver) -> None:
    endpoint = await register(api, receiver, ["invite.redeemed"])
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.run_once()
        receiver.mode = "fail"
        await _redeems(api, "S", 30)
        # read the whole log while the receiver is down: far behind, so nothing is tried inline
        while await dispatcher.behind():
            await dispatcher._log_pass()  # the log loop alone: no deliveries from PostgreSQL yet
        spilled = await runtime.pool.fetchval(
            "SELECT count(*) FROM dg_webhook_deliveries WHERE spilled AND attempts = 0")
        assert spilled >= 20 and dispatcher.stats.spilled == spilled
        await persister.run_once()
        await persister.run_once()
        assert await _log_length(runtime) == 0  # Redis holds none of it any more
        receiver.mode = "ok"
        await until(lambda: _run_and_count(dispatcher, receiver, 30), what="30 deliveries from PostgreSQL")
    finally:
        await dispatcher.aclose()
    uses = [e["data"]["used_count"] for e in receiver.accepted]
    assert uses == sorted(uses) == list(range(1, 31))  # one entity: its log order, nothing lost
    status, log = await api.call("GET", f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries?limit=20")
    assert status == 200 and log["has_more"] is True and len(log["data"]) == 20
    status, rest = await api.call("GET", f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries"
                                         f"?limit=20&cursor={log['next_cursor']}")
    assert status == 200 and rest["has_more"] is False and len(rest["data"]) == 10
    assert {d["event_id"] for d in log["data"] + rest["data"]} == set(receiver.ids())
    status, bad = await api.call("GET", f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries?cursor=zz!")
    assert status == 400 and bad["details"] == {"field": "cursor"}


async def _run_and_count(dispatcher: object, receiver: Receiver, n: int) -> bool:
    await dispatcher.run_once()  # type: ignore[attr-defined]
    return len(receiver.accepted) >= n


async def test_crowd_of_purchases_two_dispatchers(api: Api, runtime: Runtime, persister: Persister,
                                                  receiver: Receiver) -> None:
    await register(api, receiver, ["purchase.created"])
    await create_offer(api, "o1", 1000)
    d1, d2 = runtime.new_dispatcher(name="d1"), runtime.new_dispatcher(name="d2")
    t1 = asyncio.create_task(d1.run())
    t2 = asyncio.create_task(d2.run())
    try:
        results = await asyncio.gather(*(purchase(api, "o1", f"user{i}") for i in range(300)))
        assert [s for s, _ in results] == [201] * 300, [b for s, b in results if s != 201][:3]
        purchase_ids = {b["purchase_id"] for _, b in results}
        await until(lambda: len({e["data"]["purchase_id"] for e in receiver.accepted}) >= 150,
                    what="half the deliveries")
        await d1.close()  # the first hands its partitions over (its leases released)
        await asyncio.wait_for(t1, 30)
        await until(lambda: len({e["data"]["purchase_id"] for e in receiver.accepted}) >= 300,
                    what="every delivery")
    finally:
        await d1.close()
        await d2.close()
        await asyncio.gather(t1, t2, return_exceptions=True)
    delivered = Counter(e["id"] for e in receiver.accepted)
    assert {e["data"]["purchase_id"] for e in receiver.accepted} == purchase_ids
    assert len(delivered) == 300 and all(n == 1 for n in delivered.values()), delivered.most_common(3)
    rows = await runtime.pool.fetch(
        "SELECT event_id, count(*) AS n, min(status) AS s FROM dg_webhook_deliveries GROUP BY event_id")
    assert len(rows) == 300 and {(r["n"], r["s"]) for r in rows} == {(1, "succeeded")}
    await persister.drain()
    assert await _log_length(runtime) == 0


async def test_pool_low_fires_once_per_crossing(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    await register(api, receiver, ["codes.pool_low", "codes.uploaded"])
    status, body = await api.call("POST", "/v1/campaigns",
                                  json={"campaign_id": "camp", "types": ["gift"], "low_watermark": 4})
    assert status == 201, body
    codes = "\n".join(f"C{i:03d}" for i in range(10))
    response = await api.client.post("/v1/campaigns/camp/codes?type=gift", data=codes,
                                     headers={**api.service, "Content-Type": "text/csv"})
    assert response.status == 200, await response.text()
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.drain()
        for count in (3, 2, 2):  # 10 -> 7 -> 5 -> 3: crosses below 4 once
            status, body = await api.call("POST", "/v1/campaigns/camp/reservations",
                                          json={"type": "gift", "count": count})
            assert status == 200, body
            await dispatcher.drain()
        status, _ = await api.call("POST", "/v1/campaigns/camp/reservations", json={"type": "gift", "count": 1})
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    types = [e["type"] for e in receiver.accepted]
    assert types.count("codes.uploaded") == 1
    lows = [e for e in receiver.accepted if e["type"] == "codes.pool_low"]
    assert len(lows) == 1, lows
    assert lows[0]["data"] == {"campaign_id": "camp", "type": "gift", "available": 3, "low_watermark": 4}


async def test_a_hanging_receiver_does_not_hold_the_log(api: Api, runtime: Runtime, persister: Persister,
                                                        receiver: Receiver) -> None:
    """The persister drains (and the log is trimmed) while every delivery hangs: the
    dispatcher spills instead of keeping entries in Redis."""
    await register(api, receiver, ["invite.redeemed"])
    receiver.mode = "hang"
    dispatcher = runtime.new_dispatcher(name="d1")
    task = asyncio.create_task(dispatcher.run())
    try:
        await _redeems(api, "H", 40)
        await persister.drain(timeout_s=60)
        assert await _log_length(runtime) == 0
        assert await runtime.pool.fetchval(
            "SELECT count(*) FROM dg_webhook_deliveries WHERE status = 'pending'") == 40
        assert len(receiver.hits) < 40  # a hanging receiver was not tried 40 times over
    finally:
        await dispatcher.close()
        await asyncio.wait_for(task, 60)


async def test_dispatcher_first_never_trims_what_the_persister_has_not_read(
        api: Api, runtime: Runtime, persister: Persister, receiver: Receiver) -> None:
    await register(api, receiver, ["invite.redeemed"])
    written = await _log_length(runtime)
    assert written > 0  # the tenant and its key, not yet persisted
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await _redeems(api, "F", 3)
        while await dispatcher.behind():
            await dispatcher.run_once()
        assert len(receiver.accepted) == 3
        assert await _log_length(runtime) == written + 4  # the persister's group does not exist yet
    finally:
        await dispatcher.aclose()
    await persister.drain()
    assert persister.stats.dead_letters == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM invite_code_uses") == 3


async def test_a_batch_that_fails_to_record_is_done_again(api: Api, runtime: Runtime,
                                                          receiver: Receiver) -> None:
    """PostgreSQL failing after the log was read: the entries are not offered again by
    ``XREADGROUP >``, so the dispatcher keeps the batch and does it first next time."""
    import asyncpg

    await register(api, receiver, ["invite.redeemed"])
    await _redeems(api, "PG", 2)
    dispatcher = runtime.new_dispatcher(name="d1")
    real = dispatcher._record
    failures = [asyncpg.PostgresConnectionError("connection lost")]

    async def flaky(conn: object, owed: object) -> None:
        if failures:
            raise failures.pop()
        await real(conn, owed)  # type: ignore[arg-type]

    dispatcher._record = flaky  # type: ignore[method-assign]
    try:
        raised = False
        for _ in range(10):  # batches of 3: the redemptions come after the tenant's own entries
            try:
                await dispatcher.run_once()
            except asyncpg.PostgresConnectionError:
                raised = True
                break
        assert raised and not failures
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    assert sorted(e["data"]["user_id"] for e in {e["id"]: e for e in receiver.accepted}.values()) == ["u0", "u1"]
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM dg_webhook_deliveries WHERE status = 'succeeded'") == 2


async def test_without_any_endpoint_the_logs_are_passed_unread_and_trimmed(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    """No tenant has an endpoint: the dispatcher moves its group to each log's head
    (XGROUP SETID) instead of reading the entries, and the log still trims to empty."""
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.run_once()  # its group exists from here on
        await _redeems(api, "N", 40)
        await persister.run_once()
        assert await _log_length(runtime) > 0  # applied; the dispatcher's group holds the trim
        await dispatcher.run_once()
        assert dispatcher.stats.entries_read == 0
        assert dispatcher.stats.skipped_passes >= 1
        assert await dispatcher.behind() == 0
        assert await _log_length(runtime) == 0
    finally:
        await dispatcher.aclose()


async def test_an_endpoint_registered_while_passing_unread_gets_every_later_event(
        api: Api, runtime: Runtime, persister: Persister, receiver: Receiver) -> None:
    """Skipping, then an endpoint is registered: the entries appended after it are read
    and delivered (the heads are read before PostgreSQL is asked, so no entry appended
    after the registration is passed unread)."""
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.run_once()
        await _redeems(api, "B", 3)  # before any endpoint: passed unread
        await dispatcher.run_once()
        skipped = dispatcher.stats.skipped_passes
        assert skipped >= 1 and dispatcher.stats.entries_read == 0
        await register(api, receiver, ["invite.redeemed"])
        status, body = await api.call("POST", "/v1/invites/B/redeem", json={"user_id": "after"})
        assert status == 200, body
        while await dispatcher.behind():
            await dispatcher.run_once()
        assert dispatcher.stats.skipped_passes == skipped
        assert [e["data"]["user_id"] for e in receiver.accepted] == ["after"]
    finally:
        await dispatcher.aclose()
