"""Outbound webhooks end to end: a real receiver on 127.0.0.1 verifies every delivery
with the client's ``verify``; retries keep the event id; failing endpoints are disabled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.webhooks import Receiver, receiver, register, until, webhook_settings

__all__ = ["receiver"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings)


async def _invite_redeems(api: Api, code: str, users: list[str]) -> None:
    status, body = await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 1000})
    assert status == 201, body
    for user in users:
        status, body = await api.call("POST", f"/v1/invites/{code}/redeem", json={"user_id": user})
        assert status == 200, body


async def test_delivered_signed_and_verified(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    endpoint = await register(api, receiver, ["invite.redeemed"])
    await _invite_redeems(api, "LAUNCH", ["u1", "u2"])
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    assert receiver.rejected == 0
    assert [e["type"] for e in receiver.accepted] == ["invite.redeemed", "invite.redeemed"]
    assert [e["data"]["user_id"] for e in receiver.accepted] == ["u1", "u2"]
    assert {e["tenant_id"] for e in receiver.accepted} == {"acme"}
    assert len(set(receiver.ids())) == 2
    status, log = await api.call("GET", f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries")
    assert status == 200, log
    assert [d["status"] for d in log["data"]] == ["succeeded", "succeeded"]
    assert {d["event_id"] for d in log["data"]} == set(receiver.ids())
    # a receiver with another secret refuses: the signature is really checked
    receiver.secret = "whsec_wrong"
    await _invite_redeems(api, "OTHER", ["u3"])
    dispatcher = runtime.new_dispatcher(name="d2")
    try:
        await dispatcher.run_once()
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    assert receiver.rejected >= 1


async def test_retries_keep_the_event_id(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    await register(api, receiver)
    receiver.mode = "fail"
    await _invite_redeems(api, "RETRY", ["u1"])
    dispatcher = runtime.new_dispatcher(name="d1")
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: len(receiver.hits) >= 3, what="three failed attempts")
        receiver.mode = "hang"  # then timeouts
        await until(lambda: len(receiver.hits) >= 4, what="an attempt that times out")
        receiver.mode = "ok"
        await until(lambda: len(receiver.accepted) >= 1, what="the delivery after recovery")
    finally:
        await dispatcher.close()
        await asyncio.wait_for(task, 30)
    ids = {hit.event["id"] for hit in receiver.hits}
    assert len(ids) == 1, ids
    assert receiver.accepted[0]["id"] in ids
    assert dispatcher.stats.retries and sum(dispatcher.stats.retries.values()) >= 3
    rows = await runtime.pool.fetch("SELECT status, attempts FROM dg_webhook_deliveries")
    assert [(r["status"], r["attempts"] >= 5) for r in rows] == [("succeeded", True)]


async def test_a_closing_dispatcher_gives_back_what_it_claimed_and_did_not_send(
        api: Api, runtime: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """``close()`` arriving while the queue's claim is in flight: the claimed deliveries
    are given back at once. They were left locked for the timeout plus half a minute, so a
    graceful close (a deploy) held them back from the next dispatcher for that long."""
    await register(api, receiver)
    receiver.mode = "fail"
    users = [f"u{i}" for i in range(5)]
    await _invite_redeems(api, "CLOSING", users)
    first = runtime.new_dispatcher(name="d0")
    try:
        await first.run_once()  # the log read: the first attempt fails, the rest queue behind it
    finally:
        await first.aclose()
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM dg_webhook_deliveries WHERE status = 'pending'") == len(users)
    receiver.mode = "ok"
    await runtime.pool.execute("UPDATE dg_webhook_deliveries SET next_attempt_at = now()")
    closing = runtime.new_dispatcher(name="d1")
    claim = closing._claim

    async def claim_then_close(limit: int) -> list[Any]:
        rows = await claim(limit)
        assert rows, "nothing was claimed: the test would prove nothing"
        await closing.close()
        return rows

    monkeypatch.setattr(closing, "_claim", claim_then_close)
    try:
        await closing.run_once()
    finally:
        await closing.aclose()
    assert receiver.accepted == []
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM dg_webhook_deliveries WHERE locked_until > now()") == 0
    second = runtime.new_dispatcher(name="d2")
    try:
        await second.run_once()  # at once, not after the lock would have lapsed
    finally:
        await second.aclose()
    assert sorted(e["data"]["user_id"] for e in receiver.accepted) == users


async def test_failed_after_retry_window_and_endpoint_disabled(
        make_settings: Callable[..., Settings], isolated: str, receiver: Receiver) -> None:
    from dropgate.runtime import open_runtime
    from tests.conftest import Api as _Api

    settings = webhook_settings(make_settings, webhook_retry_for_s=0.5, webhook_disable_after_s=1.0)
    async with open_runtime(settings, run_persister=False) as rt:
        from aiohttp.test_utils import TestClient

        from dropgate.http.app import create_app
        from tests.support.apiserver import ApiServer

        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = _Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            endpoint = await register(api, receiver)
            receiver.mode = "fail"
            await _invite_redeems(api, "DOWN", ["u1"])
            dispatcher = rt.new_dispatcher(name="d1")
            task = asyncio.create_task(dispatcher.run())
            try:
                async def gave_up() -> bool:
                    return bool(await rt.pool.fetchval(
                        "SELECT status = 'failed' FROM dg_webhook_deliveries"))
                await until(gave_up, what="the delivery to fail for good")
                await _invite_redeems(api, "DOWN2", ["u2"])

                async def disabled() -> bool:
                    return bool(await rt.pool.fetchval(
                        "SELECT disabled_at IS NOT NULL FROM dg_webhook_endpoints"))
                await until(disabled, what="the endpoint to be disabled")
            finally:
                await dispatcher.close()
                await asyncio.wait_for(task, 30)
            status, listed = await api.call("GET", "/v1/webhook-endpoints")
            assert status == 200
            assert [(e["endpoint_id"], e["status"]) for e in listed["data"]] == [
                (endpoint["endpoint_id"], "disabled")]
            assert "secret" not in listed["data"][0]
            status, failed = await api.call(
                "GET", f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries?status=failed")
            assert status == 200
            assert len(failed["data"]) >= 1
            assert await rt.pool.fetchval(
                "SELECT count(*) FROM dg_webhook_deliveries WHERE status = 'pending'") == 0
            # a disabled endpoint is sent nothing more
            hits = len(receiver.hits)
            await _invite_redeems(api, "DOWN3", ["u3"])
            d2 = rt.new_dispatcher(name="d2")
            try:
                await d2.run_once()
            finally:
                await d2.aclose()
            assert len(receiver.hits) == hits
        finally:
            await client.close()


async def test_an_endpoint_registered_later_receives_the_next_event(api: Api, runtime: Runtime,
                                                                  receiver: Receiver) -> None:
    """The dispatcher's endpoint cache never hides a new endpoint from a newer event."""
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await _invite_redeems(api, "EARLY", ["u0"])
        await dispatcher.drain()  # the tenant's (empty) endpoint list is cached now
        await register(api, receiver, ["invite.redeemed"])
        status, _ = await api.call("POST", "/v1/invites/EARLY/redeem", json={"user_id": "u1"})
        assert status == 200
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    assert [e["data"]["user_id"] for e in receiver.accepted] == ["u1"]


async def test_a_receiver_down_then_back_gets_everything_in_order(api: Api, runtime: Runtime,
                                                                  receiver: Receiver) -> None:
    await register(api, receiver, ["invite.redeemed"])
    receiver.mode = "fail"
    dispatcher = runtime.new_dispatcher(name="d1")
    task = asyncio.create_task(dispatcher.run())
    try:
        for code in ("ONE", "TWO"):
            status, _ = await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 100})
            assert status == 201
        for i in range(20):
            status, body = await api.call("POST", f"/v1/invites/{('ONE', 'TWO')[i % 2]}/redeem",
                                          json={"user_id": f"u{i}"})
            assert status == 200, body
        await until(lambda: len(receiver.hits) >= 10, what="failed attempts")
        receiver.mode = "ok"
        await until(lambda: len({e["id"] for e in receiver.accepted}) >= 20, what="every event")
    finally:
        await dispatcher.close()
        await asyncio.wait_for(task, 30)
    assert {e["data"]["user_id"] for e in receiver.accepted} == {f"u{i}" for i in range(20)}
    for code in ("ONE", "TWO"):
        uses = [e["data"]["used_count"] for e in receiver.accepted if e["data"]["code"] == code]
        assert list(dict.fromkeys(uses)) == list(range(1, 11)), (code, uses)
