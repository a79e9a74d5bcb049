"""Webhook targets: private addresses refused at registration and again at delivery
(after DNS, on the address actually connected to); https required; redirects not
followed; event types checked against the public list."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from dropgate.webhooks.dispatcher import Dispatcher
from tests.conftest import Api
from tests.support.webhooks import Receiver, receiver, register, webhook_settings

__all__ = ["receiver"]


class FakeDns:
    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise OSError(f"NXDOMAIN {host}")
        return self.answers[host]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, webhook_allow_private=False, webhook_allow_http=True)


@pytest.fixture
def dns(runtime: Runtime) -> FakeDns:
    fake = FakeDns()
    runtime.webhook_resolve = fake
    return fake


async def _post(api: Api, url: str, events: list[str] | None = None) -> tuple[int, dict[str, object]]:
    status, body = await api.call("POST", "/v1/webhook-endpoints",
                                  json={"url": url, "events": ["*"] if events is None else events})
    return status, body


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://169.254.169.254/latest",
    "http://224.0.0.1/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://192.168.1.1/",
])
async def test_private_literals_refused(api: Api, dns: FakeDns, url: str) -> None:
    status, body = await _post(api, url)
    assert status == 400, body
    assert body["code"] == "VALIDATION_ERROR" and body["details"] == {"field": "url"}


async def test_names_resolving_to_private_refused(api: Api, dns: FakeDns) -> None:
    dns.answers["evil.example.test"] = ["93.184.216.34", "127.0.0.1"]
    status, body = await _post(api, "https://evil.example.test/hook")
    assert status == 400 and "127.0.0.1" in str(body["error"]), body
    status, body = await _post(api, "https://nowhere.example.test/hook")
    assert status == 400, body
    dns.answers["ok.example.test"] = ["93.184.216.34"]
    status, body = await _post(api, "https://ok.example.test/hook")
    assert status == 201, body


async def test_https_required_without_allow_http(make_settings: Callable[..., Settings], isolated: str) -> None:
    from aiohttp.test_utils import TestClient

    from dropgate.http.app import create_app
    from dropgate.runtime import open_runtime
    from tests.support.apiserver import ApiServer

    strict = webhook_settings(make_settings, webhook_allow_private=False, webhook_allow_http=False)
    async with open_runtime(strict, run_persister=False) as rt:
        fake = FakeDns()
        fake.answers["ok.example.test"] = ["93.184.216.34"]
        rt.webhook_resolve = fake
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            status, body = await _post(api, "http://ok.example.test/hook")
            assert status == 400 and "https" in str(body["error"]), body
            status, body = await _post(api, "https://ok.example.test/hook")
            assert status == 201, body
            for bad in ("ftp://ok.example.test/", "/relative", "https://user:pw@ok.example.test/"):
                status, body = await _post(api, bad)
                assert status == 400, (bad, body)
        finally:
            await client.close()


async def test_event_types_checked(api: Api, dns: FakeDns) -> None:
    dns.answers["ok.example.test"] = ["93.184.216.34"]
    status, body = await _post(api, "https://ok.example.test/h", ["purchase.paid", "purchase.bogus"])
    assert status == 400 and body["details"]["field"] == "events", body
    assert "purchase.paid" in body["details"]["types"]  # type: ignore[index]
    status, body = await _post(api, "https://ok.example.test/h", ["*", "purchase.paid"])
    assert status == 400, body
    status, body = await _post(api, "https://ok.example.test/h", [])
    assert status == 400, body
    status, body = await _post(api, "https://ok.example.test/h", ["purchase.paid", "codes.pool_low"])
    assert status == 201 and body["events"] == ["purchase.paid", "codes.pool_low"], body
    assert str(body["secret"]).startswith("whsec_")


async def test_dns_answer_changed_after_registration(api: Api, runtime: Runtime, dns: FakeDns,
                                                     receiver: Receiver) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://rebind.example.test:{port}/hook"
    dns.answers["rebind.example.test"] = ["93.184.216.34"]
    await register(api, receiver, ["invite.redeemed"], url=url)
    dns.answers["rebind.example.test"] = ["127.0.0.1"]  # the rebinding attack
    status, _ = await api.call("POST", "/v1/invites", json={"code": "X", "max_uses": 5})
    assert status == 201
    status, _ = await api.call("POST", "/v1/invites/X/redeem", json={"user_id": "u1"})
    assert status == 200
    dispatcher = runtime.new_dispatcher(name="strict")
    try:
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    assert receiver.hits == []
    row = await runtime.pool.fetchrow("SELECT status, last_error FROM dg_webhook_deliveries")
    assert row["status"] == "pending" and "127.0.0.1 is a loopback address" in row["last_error"], dict(row)
    # the same name and receiver with private targets allowed: the setup really reaches it
    lenient = msgspec.structs.replace(runtime.settings, webhook_allow_private=True)
    await runtime.pool.execute("UPDATE dg_webhook_deliveries SET next_attempt_at = now()")
    control = Dispatcher(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys, scripts=runtime.scripts,
                         settings=lenient, resolve=dns, name="lenient")
    try:
        await control.run_once()
    finally:
        await control.aclose()
    assert len(receiver.accepted) == 1 and receiver.accepted[0]["data"]["user_id"] == "u1"


async def test_redirects_not_followed(make_settings: Callable[..., Settings], isolated: str) -> None:
    from aiohttp.test_utils import TestClient

    from dropgate.http.app import create_app
    from dropgate.runtime import open_runtime
    from tests.support.apiserver import ApiServer

    target, hop = Receiver(), Receiver()
    await target.start()
    await hop.start()
    try:
        # a retry far off: one pass must not also find the 307's retry due on a slow machine
        settings = webhook_settings(make_settings, webhook_retry_base_s=60, webhook_retry_max_s=120)
        async with open_runtime(settings, run_persister=False) as rt:
            client = TestClient(ApiServer(create_app(rt)))
            await client.start_server()
            try:
                api = Api(client=client, tenant_id="acme", service_key="")
                api.service_key = await api.new_tenant("acme")
                hop.mode, hop.redirect_to = "redirect", target.url
                await register(api, hop, ["invite.redeemed"])
                await api.call("POST", "/v1/invites", json={"code": "R", "max_uses": 5})
                await api.call("POST", "/v1/invites/R/redeem", json={"user_id": "u1"})
                d = rt.new_dispatcher(name="d")
                try:
                    await d.run_once()
                finally:
                    await d.aclose()
                assert len(hop.hits) == 1 and target.hits == []
                row = await rt.pool.fetchrow("SELECT status, response_status FROM dg_webhook_deliveries")
                assert (row["status"], row["response_status"]) == ("pending", 307)
            finally:
                await client.close()
    finally:
        await target.close()
        await hop.close()
