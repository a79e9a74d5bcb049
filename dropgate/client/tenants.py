"""``client.tenants`` and ``client.keys`` (admin keys only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from dropgate.client.base import Namespace
from dropgate.models.lists import KeyItem, KeyPage, TenantItem, TenantPage
from dropgate.models.scopes import Scope
from dropgate.models.tenants import (
    KeyCreate,
    KeyCreated,
    SubscriptionHistory,
    SubscriptionStatus,
    SubscriptionUpdate,
    Tenant,
    TenantCheckout,
    TenantCheckoutUpdate,
    TenantCreate,
)


class Tenants(Namespace):
    """Tenants and their subscriptions (``/v1/tenants``; needs an admin key)."""

    async def create(
        self,
        tenant_id: str,
        *,
        name: str = "",
        subscription_status: SubscriptionStatus = "active",
        trial_end: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Tenant:
        """Create a tenant (``POST /v1/tenants``).

        ``name`` defaults to the id; ``trial_end`` is required with ``"trialing"``.
        Raises ``AlreadyExists`` when the id is taken.
        """
        body = TenantCreate(tenant_id=tenant_id, name=name, subscription_status=subscription_status,
                            trial_end=trial_end)
        return await self._call("POST", "/v1/tenants", Tenant, body=body,
                                idempotency_key=idempotency_key)

    async def get(self, tenant_id: str) -> Tenant:
        """A tenant with its subscription and balances (``GET /v1/tenants/{tenant_id}``).

        Raises ``NotFound``.
        """
        return await self._call("GET", "/v1/tenants/{tenant_id}", Tenant,
                                path_params={"tenant_id": tenant_id})

    async def set_subscription(
        self,
        tenant_id: str,
        *,
        subscription_status: SubscriptionStatus,
        trial_end: datetime | None = None,
    ) -> Tenant:
        """Change a tenant's subscription (``PUT /v1/tenants/{tenant_id}/subscription``).

        Ordered against the tenant's critical operations: one that committed before
        the change stands, none commits after a suspension. Raises ``NotFound``.
        """
        body = SubscriptionUpdate(subscription_status=subscription_status, trial_end=trial_end)
        return await self._call("PUT", "/v1/tenants/{tenant_id}/subscription", Tenant,
                                path_params={"tenant_id": tenant_id}, body=body)

    def list(
        self,
        *,
        subscription_status: SubscriptionStatus | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[TenantItem]:
        """Every tenant, newest first (``GET /v1/tenants``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> TenantPage:
            return await self._call("GET", "/v1/tenants", TenantPage, query=query)

        return self._pages(fetch, {"subscription_status": subscription_status},
                           page_size=page_size, consistent=consistent)

    async def set_checkout(self, tenant_id: str, *, success_url: str | None = None,
                           cancel_url: str | None = None) -> TenantCheckout:
        """Where the tenant's checkouts return the buyer when the offer names no URL
        (``PUT /v1/tenants/{tenant_id}/checkout``); ``None`` means dropgate's own pages.

        Absolute http(s) URLs; ``{CHECKOUT_SESSION_ID}`` and ``{PURCHASE_ID}`` are filled
        in. Raises ``ValidationError`` or ``NotFound``.
        """
        return await self._call("PUT", "/v1/tenants/{tenant_id}/checkout", TenantCheckout,
                                path_params={"tenant_id": tenant_id},
                                body=TenantCheckoutUpdate(success_url=success_url, cancel_url=cancel_url))


    async def subscription_history(self, tenant_id: str) -> SubscriptionHistory:
        """Every subscription status of the tenant, oldest first, with ``changed_at`` and
        ``changed_by`` (a key id) (``GET /v1/tenants/{tenant_id}/subscription/history``).

        Served from PostgreSQL: a change shows once persisted. Raises ``NotFound``.
        """
        return await self._call("GET", "/v1/tenants/{tenant_id}/subscription/history",
                                SubscriptionHistory, path_params={"tenant_id": tenant_id})

    async def current(self) -> Tenant:
        """The calling key's own tenant (``GET /v1/tenant``): a service key may call it
        (an admin client names the tenant with ``tenant_id=``)."""
        return await self._call("GET", "/v1/tenant", Tenant)


class Keys(Namespace):
    """API keys (``/v1/keys``; needs an admin key)."""

    async def create(
        self,
        role: Literal["admin", "service"],
        *,
        tenant_id: str | None = None,
        name: str | None = None,
        scopes: list[Scope] | None = None,
        idempotency_key: str | None = None,
    ) -> KeyCreated:
        """Create an API key (``POST /v1/keys``); ``.key`` is shown this once only.

        A ``"service"`` key belongs to ``tenant_id`` (raises ``NotFound`` for an
        unknown tenant) and needs a ``name`` (who holds it; four-eyes compares names,
        case-insensitively); an ``"admin"`` key takes no tenant. ``scopes`` default to
        every scope, and can name none the calling key lacks (``Forbidden``).
        """
        return await self._call("POST", "/v1/keys", KeyCreated,
                                body=KeyCreate(role=role, tenant_id=tenant_id, name=name, scopes=scopes),
                                idempotency_key=idempotency_key)

    async def delete(self, key_id: str, *, cascade: bool = False) -> None:
        """Revoke an API key (``DELETE /v1/keys/{key_id}``); with ``cascade`` every key
        minted from it too, transitively. Once this returns, no server process accepts
        the revoked keys. Raises ``NotFound`` if unknown."""
        await self._call("DELETE", "/v1/keys/{key_id}", None, path_params={"key_id": key_id},
                         query={"cascade": "true" if cascade else None})

    def list(
        self,
        *,
        tenant_id: str | None = None,
        role: Literal["admin", "service"] | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[KeyItem]:
        """API keys, newest first, never their secrets (``GET /v1/keys``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> KeyPage:
            return await self._call("GET", "/v1/keys", KeyPage, query=query)

        return self._pages(fetch, {"tenant_id": tenant_id, "role": role},
                           page_size=page_size, consistent=consistent)
