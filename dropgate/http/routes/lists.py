"""Lists of every collection (v1.1): keyset pages from PostgreSQL, ``?consistent=true``.

Each route is one ``ListSpec`` (http/listspecs.py) with its scope: the caller's
tenant and the path's ids. A single-entity ``GET`` stays live (Redis); a list is
the durable record and may trail it by the persistence lag, unless the caller asks
for ``consistent=true`` (persistence/watermark.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from dropgate.errors import NotFound, PersistenceLagging, ValidationError
from dropgate.http import listspecs as L
from dropgate.http.routing import ApiRoutes, Call
from dropgate.models.lists import (
    BookingPage,
    CampaignPage,
    CodePage,
    InvitePage,
    InviteUsePage,
    KeyPage,
    OrderPage,
    PaymentPage,
    PromoPage,
    PromoUsePage,
    PurchasePage,
    TenantPage,
    WithdrawalPage,
)
from dropgate.persistence.lists import Cursors, ListSpec, Page, cursor_secret, fetch_page, parse_limit
from dropgate.persistence.watermark import wait_applied

routes = ApiRoutes("lists")

_PAGING = (("limit", "page size, 1-1000 (default 100)", False),
           ("cursor", "the previous page's next_cursor", False),
           ("consistent", "true: wait (at most 5 s) until PostgreSQL holds every change "
                          "acknowledged before this request", False))
_ERRORS = [ValidationError, PersistenceLagging]
# per PostgreSQL pool (one per runtime): the install's cursor key, read once
_cursors: dict[int, tuple[asyncpg.Pool, Cursors]] = {}
CONSISTENT_TIMEOUT_S = 5.0


def list_query(spec: ListSpec) -> list[tuple[str, str, bool]]:
    return [*_PAGING, *((name, f.description or f"filter on {name}", False)
                        for name, f in spec.filters.items())]


async def serve_list(call: Call[None], spec: ListSpec, scope: Sequence[Any], *,
                     partitions: Sequence[int] | None = None, ignore: Sequence[str] = ()) -> Page:
    """One page of ``spec`` within ``scope``; with consistent=true, after the watermark of
    ``partitions`` (default: all; empty: a table written directly, not by the persister,
    so every read of it is already consistent)."""
    runtime = call.runtime
    q = call.request.query
    consistent = q.get("consistent", "false")
    if consistent not in ("true", "false"):
        raise ValidationError("consistent must be true or false.", details={"field": "consistent"})
    limit = parse_limit(q.get("limit"))
    filters = {k: v for k, v in q.items() if k not in ("limit", "cursor", "consistent", *ignore)}
    unknown = next((k for k in filters if k not in spec.filters), None)
    if unknown is not None:
        raise ValidationError(f"Unknown filter {unknown!r}.", details={"field": unknown})
    parts = partitions if partitions is not None else range(runtime.keys.partitions)
    if consistent == "true" and parts:  # no partitions: rows not written through the log
        await wait_applied(runtime.redis, runtime.pool, runtime.keys, parts,
                           timeout_s=CONSISTENT_TIMEOUT_S)
    known = _cursors.get(id(runtime.pool))
    if known is None or known[0] is not runtime.pool:
        if len(_cursors) > 64:  # tests open many runtimes; a server has one
            _cursors.clear()
        known = _cursors[id(runtime.pool)] = (runtime.pool, Cursors(await cursor_secret(runtime.pool)))
    cursors = known[1]
    return await fetch_page(runtime.pool, cursors, spec, scope=scope, query=filters, limit=limit,
                            cursor=q.get("cursor") or None)


def own_partitions(call: Call[None]) -> list[int]:
    """The caller's tenant's partition: the only log a tenant-scoped list waits for."""
    return [call.runtime.keys.tenant(call.tenant_id).partition]


@routes.get("/v1/tenants", auth="admin", response=TenantPage, errors=_ERRORS,
            query=list_query(L.TENANTS))
async def list_tenants(call: Call[None]) -> Page:
    """Tenants, newest first."""
    return await serve_list(call, L.TENANTS, ())


@routes.get("/v1/keys", auth="any", response=KeyPage, errors=_ERRORS, query=list_query(L.KEYS))
async def list_keys(call: Call[None]) -> Page:
    """API keys, newest first, never their secrets (a service key: its own tenant's)."""
    if call.tenant_id:
        if "tenant_id" in call.request.query and call.request.query["tenant_id"] != call.tenant_id:
            raise NotFound("No such tenant.")
        return await serve_list(call, L.KEYS_OF_TENANT, (call.tenant_id,), ignore=("tenant_id",))
    return await serve_list(call, L.KEYS, ())


@routes.get("/v1/invites", response=InvitePage, errors=_ERRORS, query=list_query(L.INVITES))
async def list_invites(call: Call[None]) -> Page:
    """Invite codes, newest first."""
    return await serve_list(call, L.INVITES, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/invites/{code}/uses", response=InviteUsePage, errors=_ERRORS,
            query=list_query(L.INVITE_USES))
async def list_invite_uses(call: Call[None]) -> Page:
    """Who used an invite code, newest first."""
    return await serve_list(call, L.INVITE_USES, (call.tenant_id, call.path_id("code")),
                            partitions=own_partitions(call))


@routes.get("/v1/promos", response=PromoPage, errors=_ERRORS, query=list_query(L.PROMOS))
async def list_promos(call: Call[None]) -> Page:
    """Promo codes, newest first."""
    return await serve_list(call, L.PROMOS, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/promos/{code}/uses", response=PromoUsePage, errors=_ERRORS,
            query=list_query(L.PROMO_USES))
async def list_promo_uses(call: Call[None]) -> Page:
    """A promo code's uses, newest first, rolled-back ones too (`rolled_back: true`)."""
    return await serve_list(call, L.PROMO_USES, (call.tenant_id, call.path_id("code")),
                            partitions=own_partitions(call))


@routes.get("/v1/purchases", response=PurchasePage, errors=_ERRORS, query=list_query(L.PURCHASES))
async def list_purchases(call: Call[None]) -> Page:
    """Purchases, newest first: an offer's, a user's, by status."""
    return await serve_list(call, L.PURCHASES, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/payments", response=PaymentPage, errors=_ERRORS, query=list_query(L.PAYMENTS))
async def list_payments(call: Call[None]) -> Page:
    """Payments, newest first."""
    return await serve_list(call, L.PAYMENTS, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/withdrawals", response=WithdrawalPage, errors=_ERRORS,
            query=list_query(L.WITHDRAWALS))
async def list_withdrawals(call: Call[None]) -> Page:
    """Withdrawals, newest first."""
    return await serve_list(call, L.WITHDRAWALS, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/orders", response=OrderPage, errors=_ERRORS, query=list_query(L.ORDERS))
async def list_orders(call: Call[None]) -> Page:
    """Orders, newest first."""
    return await serve_list(call, L.ORDERS, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/bookings", response=BookingPage, errors=_ERRORS, query=list_query(L.BOOKINGS))
async def list_bookings(call: Call[None]) -> Page:
    """Bookings, newest first."""
    return await serve_list(call, L.BOOKINGS, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/campaigns", response=CampaignPage, errors=_ERRORS, query=list_query(L.CAMPAIGNS))
async def list_campaigns(call: Call[None]) -> Page:
    """Campaigns, newest first."""
    return await serve_list(call, L.CAMPAIGNS, (call.tenant_id,), partitions=own_partitions(call))


@routes.get("/v1/campaigns/{campaign_id}/codes", response=CodePage,
            errors=[*_ERRORS, NotFound], query=list_query(L.CODES))
async def list_codes(call: Call[None]) -> Page:
    """A campaign's codes in code order, by type and status (404: no such campaign)."""
    campaign_id = call.path_id("campaign_id")
    await call.runtime.codes.require_campaign(call.tenant_id, campaign_id)
    return await serve_list(call, L.CODES, (call.tenant_id, campaign_id), partitions=own_partitions(call))
