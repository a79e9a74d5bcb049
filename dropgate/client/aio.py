"""``AsyncDropgate``: the asyncio client, one aiohttp session and a namespace per domain."""

from __future__ import annotations

from typing import Any

import aiohttp

from dropgate.client.base import decode
from dropgate.client.campaigns import Campaigns
from dropgate.client.codes import Codes
from dropgate.client.invites import Invites
from dropgate.client.ledger import Bookings, Orders, Payments, Withdrawals
from dropgate.client.offers import Offers, Purchases, Sandbox
from dropgate.client.promos import Promos
from dropgate.client.tenants import Keys, Tenants
from dropgate.client.transport import RetryPolicy, Transport
from dropgate.client.webhooks import WebhookEndpoints
from dropgate.models.ops import Health, Readiness


class AsyncDropgate:
    """The dropgate API from asyncio code.

    ::

        async with AsyncDropgate("http://127.0.0.1:8080", "dg_...") as dg:
            await dg.invites.redeem("LAUNCH", user_id="u1")

    ``api_key`` is a service key (its tenant is implied) or an admin key; an admin
    acts on a tenant's resources by passing ``tenant_id`` (sent as ``X-Tenant-Id``)
    or through ``dg.for_tenant(tenant_id)``. ``timeout`` bounds each attempt in
    seconds; a call is sent again up to ``retries`` times after a connection error,
    a timeout, a 429 (honouring ``Retry-After`` up to ``max_retry_after`` seconds) or
    a 503, waiting ``backoff * 2**attempt`` seconds (jittered, at most ``max_backoff``)
    between attempts. POST calls always carry an ``Idempotency-Key``, one per
    logical call, kept across its retries. Errors are raised as the exception class
    of their API code (``dropgate.client.errors``), all under ``DropgateError``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        tenant_id: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        policy = RetryPolicy(retries=retries, backoff_s=backoff, max_backoff_s=max_backoff,
                             max_retry_after_s=max_retry_after)
        self._transport = Transport(base_url, api_key, timeout_s=timeout, policy=policy,
                                    max_connections=max_connections, session=session)
        self.tenant_id = tenant_id
        self._attach_namespaces()

    def _attach_namespaces(self) -> None:
        # one line per domain: the attribute name is the API resource
        self.tenants = Tenants(self)
        self.keys = Keys(self)
        self.invites = Invites(self)
        self.codes = Codes(self)
        self.campaigns = Campaigns(self)
        self.promos = Promos(self)
        self.offers = Offers(self)
        self.purchases = Purchases(self)
        self.sandbox = Sandbox(self)
        self.payments = Payments(self)
        self.withdrawals = Withdrawals(self)
        self.orders = Orders(self)
        self.bookings = Bookings(self)
        self.webhook_endpoints = WebhookEndpoints(self)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def __repr__(self) -> str:
        tenant = f", tenant_id={self.tenant_id!r}" if self.tenant_id else ""
        return f"AsyncDropgate({self.base_url!r}{tenant})"

    def for_tenant(self, tenant_id: str) -> AsyncDropgate:
        """A view of this client acting on ``tenant_id`` (admin keys), sharing its session."""
        view = object.__new__(AsyncDropgate)
        view._transport = self._transport
        view.tenant_id = tenant_id
        view._attach_namespaces()
        return view

    async def __aenter__(self) -> AsyncDropgate:
        self._transport.session  # noqa: B018 - opens the session inside the running loop
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (a session passed in by the caller stays open)."""
        await self._transport.close()

    async def health(self) -> Health:
        """``GET /healthz``: the server process is up."""
        answer = await self._transport.request("GET", "/healthz")
        return decode(answer, Health)

    async def readiness(self) -> Readiness:
        """``GET /readyz``: Redis, PostgreSQL and the persistence backlog, ready or not (no retries)."""
        answer = await self._transport.request("GET", "/readyz", retries=0, ok_statuses=(503,))
        return decode(answer, Readiness)

    async def openapi(self) -> dict[str, Any]:
        """``GET /openapi.json``: the server's OpenAPI 3.1 document."""
        answer = await self._transport.request("GET", "/openapi.json")
        return decode(answer, dict[str, Any])

    async def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        answer = await self._transport.request("GET", "/metrics")
        return answer.body.decode("utf-8")


__all__ = ["AsyncDropgate"]
