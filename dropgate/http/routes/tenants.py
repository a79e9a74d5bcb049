"""Tenants and API keys (admin only)."""

from __future__ import annotations

from typing import Any

from dropgate.engine.tenants import TenantState
from dropgate.errors import AlreadyExists, Forbidden, NotFound, TenantBusy, Unauthorized, ValidationError
from dropgate.http.routing import ApiRoutes, Call
from dropgate.ids import dt_to_ms, ms_to_dt
from dropgate.models.scopes import SCOPES
from dropgate.models.tenants import (
    KeyCreate,
    KeyCreated,
    SubscriptionChange,
    SubscriptionHistory,
    SubscriptionUpdate,
    Tenant,
    TenantCheckout,
    TenantCheckoutUpdate,
    TenantCreate,
)
from dropgate.money import format_amount

routes = ApiRoutes("tenants")


def tenant_view(state: TenantState) -> Tenant:
    return Tenant(
        tenant_id=state.tenant_id, name=state.name,
        subscription_status=state.status,  # type: ignore[arg-type]
        trial_end=ms_to_dt(state.trial_end_ms),
        balance={cur: format_amount(v, cur) for cur, v in sorted(state.balances.items())},
    )


def _trial_end(status: str, trial_end: Any) -> int | None:
    if status == "trialing" and trial_end is None:
        raise ValidationError("trial_end is required when subscription_status is trialing.",
                              details={"field": "trial_end"})
    return dt_to_ms(trial_end, "trial_end")


@routes.post("/v1/tenants", auth="admin", body=TenantCreate, response=Tenant, status=201,
             errors=[AlreadyExists])
async def create_tenant(call: Call[TenantCreate]) -> Tenant:
    """Create a tenant."""
    b = call.body
    state = await call.runtime.tenants.create(
        b.tenant_id, name=b.name or b.tenant_id, status=b.subscription_status,
        trial_end_ms=_trial_end(b.subscription_status, b.trial_end), changed_by=_key_id(call),
    )
    return tenant_view(state)


@routes.get("/v1/tenants/{tenant_id}", auth="admin", response=Tenant, errors=[NotFound])
async def get_tenant(call: Call[None]) -> Tenant:
    """A tenant with its subscription and balances."""
    return tenant_view(await call.runtime.tenants.get(call.path_id("tenant_id")))


@routes.put("/v1/tenants/{tenant_id}/subscription", auth="admin", body=SubscriptionUpdate,
            response=Tenant, errors=[NotFound, TenantBusy])
async def set_subscription(call: Call[SubscriptionUpdate]) -> Tenant:
    """Change a tenant's subscription status, in the tenant's actor: ordered after the
    operations that arrived before it and before those that arrive after."""
    b = call.body
    tenant_id, tenants = call.path_id("tenant_id"), call.runtime.tenants
    trial_end_ms = _trial_end(b.subscription_status, b.trial_end)
    if not await tenants.exists(tenant_id):  # no actor (nor lease) for a tenant that is not there
        raise NotFound("No such tenant.", details={"tenant_id": tenant_id})
    state = await call.runtime.actors.ask(tenant_id, lambda _: tenants.set_subscription(
        tenant_id, status=b.subscription_status, trial_end_ms=trial_end_ms, changed_by=_key_id(call)))
    return tenant_view(state)


@routes.put("/v1/tenants/{tenant_id}/checkout", auth="admin", body=TenantCheckoutUpdate,
            response=TenantCheckout, errors=[NotFound])
async def set_checkout(call: Call[TenantCheckoutUpdate]) -> TenantCheckout:
    """Where the tenant's checkouts return the buyer when the offer names no
    success_url / cancel_url (null: dropgate's /checkout/done and /checkout/cancelled)."""
    b = call.body
    urls = await call.runtime.tenants.set_checkout(call.path_id("tenant_id"), success_url=b.success_url,
                                                   cancel_url=b.cancel_url)
    return TenantCheckout(tenant_id=urls.tenant_id, success_url=urls.success_url, cancel_url=urls.cancel_url)


@routes.get("/v1/tenants/{tenant_id}/subscription/history", auth="admin", response=SubscriptionHistory,
            errors=[NotFound])
async def subscription_history(call: Call[None]) -> SubscriptionHistory:
    """Every subscription status the tenant has had, oldest first, with when and by which
    key; kept forever. Served from PostgreSQL: trails a change by the persistence lag."""
    tenant_id = call.path_id("tenant_id")
    if not await call.runtime.tenants.exists(tenant_id):
        raise NotFound("No such tenant.", details={"tenant_id": tenant_id})
    rows = await call.runtime.pool.fetch(
        """SELECT subscription_status, trial_end, changed_at, changed_by FROM subscription_history
            WHERE tenant_id = $1 ORDER BY version""", tenant_id)
    return SubscriptionHistory(tenant_id=tenant_id, data=[SubscriptionChange(**dict(r)) for r in rows])


@routes.get("/v1/tenant", response=Tenant, errors=[NotFound])
async def own_tenant(call: Call[None]) -> Tenant:
    """The calling key's own tenant, as the admin ``GET /v1/tenants/{tenant_id}`` shows it
    (an admin key names it in X-Tenant-Id)."""
    return tenant_view(await call.runtime.tenants.get(call.tenant_id))


def _key_id(call: Call[Any]) -> str | None:
    return call.principal.key_id if call.principal is not None else None


@routes.post("/v1/keys", auth="admin", body=KeyCreate, response=KeyCreated, status=201,
             errors=[NotFound, Forbidden, Unauthorized])
async def create_key(call: Call[KeyCreate]) -> KeyCreated:
    """Create an API key; the key is shown once. It records the key that minted it
    (``created_by``) and can carry no scope its minter lacks."""
    b = call.body
    if b.role == "service":
        if b.tenant_id is None:
            raise ValidationError("A service key needs tenant_id.", details={"field": "tenant_id"})
        if b.name is None:
            raise ValidationError("A service key needs a name: who holds it.", details={"field": "name"})
        if not await call.runtime.tenants.exists(b.tenant_id):
            raise NotFound("No such tenant.", details={"tenant_id": b.tenant_id})
    elif b.tenant_id is not None:
        raise ValidationError("An admin key has no tenant_id.", details={"field": "tenant_id"})
    minter = call.principal
    assert minter is not None
    wanted: list[str] | None = None if b.scopes is None else sorted(set(b.scopes))
    for scope in wanted if wanted is not None else SCOPES:
        if not minter.allows(scope):  # never more than the minter holds
            raise Forbidden(f"This key lacks the scope {scope}.", details={"scope": scope})
    key_id, token = await call.runtime.api_keys.create(
        role=b.role, tenant_id=b.tenant_id, name=b.name or "", scopes=wanted, created_by=minter.key_id)
    return KeyCreated(key_id=key_id, key=token, role=b.role, tenant_id=b.tenant_id, name=b.name,
                      scopes=wanted, created_by=minter.key_id)


@routes.delete("/v1/keys/{key_id}", auth="admin", status=204, errors=[NotFound],
               query=[("cascade", "true: also revoke every key minted by this one, transitively", False)])
async def delete_key(call: Call[None]) -> None:
    """Revoke an API key (with ``?cascade=true`` every key it minted too). Once this has
    answered, no process serves the revoked keys."""
    cascade = call.request.query.get("cascade", "false")
    if cascade not in ("true", "false"):
        raise ValidationError("cascade is true or false.", details={"field": "cascade"})
    await call.runtime.api_keys.revoke(call.path_id("key_id"), cascade=cascade == "true")
