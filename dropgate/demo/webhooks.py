"""The demo's webhook receiver: an aiohttp server on 127.0.0.1 inside the demo process.

The runner registers it as an endpoint for every event type before the crowd, waits
after the crowd until the dispatcher has delivered everything, and prints how many
events arrived, by type. Each body is checked with the client's ``verify`` (the
documented signature scheme), so the summary also says whether a receiver would have
accepted them all. Loopback URLs need ``DROPGATE_WEBHOOK_ALLOW_PRIVATE``: the demo
turns it on for itself, as it chooses the sandbox payment provider.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from aiohttp import web

from dropgate.client.errors import InvalidSignature
from dropgate.client.webhooks import verify
from dropgate.models.webhooks import EVENT_TYPES


class DemoReceiver:
    """Counts verified events by type; one id counts once (deliveries are at least once)."""

    def __init__(self) -> None:
        self.secret = ""  # known once the endpoint is registered
        self.by_type: collections.Counter[str] = collections.Counter()
        self.ids: set[str] = set()
        self.duplicates = 0
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hooks"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = verify(body, request.headers.get("Dropgate-Signature", ""), self.secret)
        except InvalidSignature:
            self.bad_signatures += 1
            return web.Response(status=400)
        if event["id"] in self.ids:
            self.duplicates += 1
        else:
            self.ids.add(event["id"])
            self.by_type[str(event["type"])] += 1
        return web.Response(status=204)

    async def register(self, call: Any) -> None:
        """Register as an endpoint for every event type (``call`` is ``DemoContext.call``)."""
        status, body = await call("POST", "/v1/webhook-endpoints",
                                  json={"url": self.url, "events": list(EVENT_TYPES),
                                        "description": "the demo's receiver"})
        if status != 201:
            raise RuntimeError(f"registering the demo's receiver failed: {status} {body}")
        self.secret = str(body["secret"])

    def summary(self) -> str:
        kinds = ", ".join(f"{t} {n}" for t, n in sorted(self.by_type.items())) or "none"
        total = sum(self.by_type.values())
        verified = "all verified" if self.bad_signatures == 0 else f"{self.bad_signatures} FAILED verify"
        return f"webhooks: {total} events arrived ({kinds}); {verified}"


async def wait_delivered(dispatcher: Any, timeout_s: float = 120.0) -> None:
    """Until the dispatcher has read every log entry and has no pending delivery."""
    deadline = time.monotonic() + timeout_s
    while await dispatcher.behind() or await dispatcher.pending_count():
        if time.monotonic() > deadline:
            raise TimeoutError("the webhook dispatcher did not deliver everything")
        await asyncio.sleep(0.05)
