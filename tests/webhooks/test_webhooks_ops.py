"""Operating the dispatcher: /metrics per endpoint, /readyz reporting a stuck dispatcher,
and the client's endpoints namespace against a live app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dropgate.client import AsyncDropgate, NotFound, ValidationError
from dropgate.client.webhooks import verify
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.webhooks import Receiver, receiver, register, until, webhook_settings

__all__ = ["receiver"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, dispatcher_stuck_s=0.5)


async def test_metrics_per_endpoint(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    endpoint = await register(api, receiver, ["invite.redeemed"])
    await api.call("POST", "/v1/invites", json={"code": "M", "max_uses": 5})
    receiver.mode = "fail"
    await api.call("POST", "/v1/invites/M/redeem", json={"user_id": "u1"})
    runtime.dispatcher = runtime.new_dispatcher(name="d1")
    task = asyncio.create_task(runtime.dispatcher.run())
    try:
        await until(lambda: len(receiver.hits) >= 2, what="a retry")
        receiver.mode = "ok"
        await until(lambda: len(receiver.accepted) == 1, what="the delivery")
    finally:
        await runtime.dispatcher.close()
        await asyncio.wait_for(task, 30)
    status, text = await api.call("GET", "/metrics", headers={})
    assert status == 200
    ep = endpoint["endpoint_id"]
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in str(text).splitlines()
             if line.startswith("dropgate_webhook") and f'endpoint="{ep}"' in line}
    assert lines[f'dropgate_webhook_successes_total{{endpoint="{ep}"}}'] == 1
    assert lines[f'dropgate_webhook_failures_total{{endpoint="{ep}"}}'] >= 1
    assert lines[f'dropgate_webhook_retries_total{{endpoint="{ep}"}}'] >= 1
    assert lines[f'dropgate_webhook_delivery_lag_seconds{{endpoint="{ep}"}}'] >= 0


async def test_readyz_reports_a_stuck_dispatcher(api: Api, runtime: Runtime, receiver: Receiver,
                                                persister: Persister) -> None:
    await register(api, receiver, ["invite.redeemed"])
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.run_once()  # the group exists; then the dispatcher stops reading
        await persister.drain()
        status, ready = await api.call("GET", "/readyz", headers={})
        assert status == 200 and ready["dispatcher_stuck"] is False, ready
        await api.call("POST", "/v1/invites", json={"code": "S", "max_uses": 5})
        await persister.run_once()  # persisted (and its lease held): only the dispatcher is behind
        await asyncio.sleep(1.0)
        status, ready = await api.call("GET", "/readyz", headers={})
        assert status == 200 and ready["dispatcher_stuck"] is True, ready  # reported, still serving
        await dispatcher.drain()
        status, ready = await api.call("GET", "/readyz", headers={})
        assert ready["dispatcher_stuck"] is False, ready
        # a due delivery nobody takes is stuck too
        await runtime.pool.execute(
            """INSERT INTO dg_webhook_deliveries (delivery_id, endpoint_id, tenant_id, event_id, event_type,
                                                  entity, body, status, next_attempt_at)
               SELECT 'whd_x', endpoint_id, tenant_id, 'evt_x', 'invite.redeemed', 'e', '{}', 'pending',
                      now() - interval '1 minute' FROM dg_webhook_endpoints""")
        status, ready = await api.call("GET", "/readyz", headers={})
        assert ready["dispatcher_stuck"] is True, ready
    finally:
        await dispatcher.aclose()


async def test_client_namespace(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    base = str(api.client.make_url("/")).rstrip("/")
    async with AsyncDropgate(base, api.service_key, retries=0) as dg:
        created = await dg.webhook_endpoints.create(receiver.url, events=["invite.redeemed"],
                                                    description="ops")
        receiver.secret = created.secret
        listed = await dg.webhook_endpoints.list()
        assert [e.endpoint_id for e in listed.data] == [created.endpoint_id]
        assert listed.data[0].description == "ops" and not listed.has_more
        with pytest.raises(ValidationError):
            await dg.webhook_endpoints.create(receiver.url, events=["nope"])
        await dg.invites.create("C", max_uses=2)
        await dg.invites.redeem("C", user_id="u1")
        dispatcher = runtime.new_dispatcher(name="d1")
        try:
            await dispatcher.drain()
        finally:
            await dispatcher.aclose()
        log = await dg.webhook_endpoints.deliveries(created.endpoint_id, status="succeeded")
        assert [d.type for d in log.data] == ["invite.redeemed"]
        hit = receiver.hits[0]
        assert verify(hit.body, hit.signature, created.secret)["id"] == log.data[0].event_id
        await dg.webhook_endpoints.delete(created.endpoint_id)
        with pytest.raises(NotFound):
            await dg.webhook_endpoints.delete(created.endpoint_id)
        with pytest.raises(NotFound):
            await dg.webhook_endpoints.deliveries(created.endpoint_id)
        assert (await dg.webhook_endpoints.list()).data == []


async def test_other_tenants_endpoints_are_not_found(api: Api, receiver: Receiver) -> None:
    endpoint = await register(api, receiver)
    other = await api.new_tenant("globex")
    headers = {"Authorization": f"Bearer {other}"}
    status, listed = await api.call("GET", "/v1/webhook-endpoints", headers=headers)
    assert status == 200 and listed["data"] == []
    path = f"/v1/webhook-endpoints/{endpoint['endpoint_id']}"
    status, body = await api.call("GET", path + "/deliveries", headers=headers)
    assert status == 404 and body["code"] == "NOT_FOUND"
    status, body = await api.call("DELETE", path, headers=headers)
    assert status == 404 and body["code"] == "NOT_FOUND"
    status, body = await api.call("GET", "/v1/webhook-endpoints?limit=0")
    assert status == 400 and body["details"] == {"field": "limit"}
    status, body = await api.call("GET", "/v1/webhook-endpoints?colour=red")
    assert status == 400
    status, body = await api.call("GET", path + "/deliveries?status=lost")
    assert status == 400 and body["details"] == {"field": "status"}
    status, body = await api.call("DELETE", path)
    assert status == 204
