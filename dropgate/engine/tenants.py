"""Tenants: their subscription status lives in Redis, where every critical script reads it.

Script <-> method: ``tenant_create-2.lua`` <-> ``Tenants.create``,
``tenant_subscription-2.lua`` <-> ``Tenants.set_subscription``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.errors import NotFound
from dropgate.ids import text_map

SubscriptionStatus = Literal["active", "trialing", "past_due", "suspended", "canceled"]


class TenantState(msgspec.Struct, kw_only=True):
    tenant_id: str
    name: str
    status: str
    trial_end_ms: int | None = None
    created_ms: int
    version: int
    balances: dict[str, int] = {}


class TenantCheckoutUrls(msgspec.Struct, kw_only=True):
    tenant_id: str
    success_url: str | None = None
    cancel_url: str | None = None
    checkout_version: int = 0


class Tenants:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self._known: set[str] = set()

    async def create(
        self, tenant_id: str, *, name: str, status: str, trial_end_ms: int | None,
        changed_by: str | None = None,
    ) -> TenantState:
        """``changed_by``: the creating key's id (its first subscription_history row)."""
        tk = self._ctx.keys.tenant(tenant_id)
        state = await self._ctx.scripts.call(
            "tenant_create",
            [tk.log, tk.tenant()],
            [self._ctx.backlog_bound, tenant_id, name, status, "" if trial_end_ms is None else trial_end_ms,
             changed_by or ""],
            type=TenantState,
        )
        self._known.add(tenant_id)
        return state

    async def set_subscription(
        self, tenant_id: str, *, status: str, trial_end_ms: int | None,
        changed_by: str | None = None,
    ) -> TenantState:
        """``changed_by``: the changing key's id, kept with the change (subscription_history)."""
        tk = self._ctx.keys.tenant(tenant_id)
        await self._ctx.scripts.call(
            "tenant_subscription",
            [tk.log, tk.tenant()],
            [self._ctx.backlog_bound, tenant_id, status, "" if trial_end_ms is None else trial_end_ms,
             changed_by or ""],
        )
        return await self.get(tenant_id)

    async def set_checkout(self, tenant_id: str, *, success_url: str | None,
                           cancel_url: str | None) -> TenantCheckoutUrls:
        """Where the tenant's checkouts return buyers when the offer names no URL."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "tenant_checkout", [tk.log, tk.tenant()],
            [self._ctx.backlog_bound, tenant_id, success_url or "", cancel_url or ""],
            type=TenantCheckoutUrls)

    async def get(self, tenant_id: str) -> TenantState:
        raw = await self._ctx.redis.hgetall(self._ctx.keys.tenant(tenant_id).tenant())
        if not raw:
            raise NotFound("No such tenant.", details={"tenant_id": tenant_id})
        fields = text_map(raw)
        balances = {k[4:]: int(v) for k, v in fields.items() if k.startswith("bal:")}
        return msgspec.convert(
            {k: v for k, v in fields.items() if ":" not in k} | {"balances": balances},
            TenantState, strict=False,
        )

    async def exists(self, tenant_id: str) -> bool:
        """Tenants are never deleted, so a positive answer is cached for the process."""
        if tenant_id in self._known:
            return True
        found = bool(await self._ctx.redis.exists(self._ctx.keys.tenant(tenant_id).tenant()))
        if found:
            self._known.add(tenant_id)
        return found
