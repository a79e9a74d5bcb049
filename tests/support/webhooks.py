"""A real webhook receiver on 127.0.0.1 and helpers of the test_webhooks_* modules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web

from dropgate.client.webhooks import verify
from dropgate.settings import Settings
from tests.conftest import Api


@dataclass
class Received:
    body: bytes
    signature: str
    event: dict[str, Any]


@dataclass
class Receiver:
    """Answers ``mode``: ``ok`` (204), ``fail`` (500), ``hang`` (never within the timeout),
    ``redirect`` (307 to ``redirect_to``). Records every request, verified or not."""

    mode: str = "ok"
    secret: str = ""
    redirect_to: str = ""
    hits: list[Received] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    url: str = ""
    delay_s: float = 0.0  # before answering ok: keeps deliveries in flight
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        signature = request.headers.get("Dropgate-Signature", "")
        self.hits.append(Received(body=body, signature=signature, event=msgspec.json.decode(body)))
        if self.mode == "fail":
            return web.Response(status=500)
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        try:
            event = verify(body, signature, self.secret)
        except Exception:
            self.rejected += 1
            return web.Response(status=400)
        self.accepted.append(event)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def ids(self) -> list[str]:
        return [e["id"] for e in self.accepted]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.close()


def webhook_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        webhook_allow_private=True, webhook_retry_base_s=0.05, webhook_retry_max_s=0.2,
        webhook_timeout_s=2.0, dispatcher_block_ms=20,
        tenant_concurrency=10_000, rate_limit_per_s=1000.0, rate_limit_burst=1000)
    values.update(overrides)
    return make_settings(**values)


async def register(api: Api, receiver: Receiver, events: list[str] | None = None,
                   url: str | None = None) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/webhook-endpoints",
                                  json={"url": url or receiver.url, "events": events or ["*"]})
    assert status == 201, body
    receiver.secret = body["secret"]
    return dict(body)


async def until(check: Callable[[], Any], *, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
