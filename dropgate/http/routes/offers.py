"""Offers, purchases, the Stripe webhook and the sandbox checkout pages.

The purchase flow, the webhooks and the sandbox pages are ``dropgate/checkout``;
these handlers only map the URLs to it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from dropgate.checkout.pages import purchase_page
from dropgate.engine.offers import OfferState, PurchaseRecord
from dropgate.errors import (
    AlreadyExists,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientInventory,
    InvalidSignature,
    InventoryConflict,
    NotFound,
    OfferUnavailable,
    PaymentProviderUnavailable,
    PersistenceLagging,
    PurchaseNotPaid,
    PurchaseNotPending,
    QuantityLimit,
    RateLimited,
    RefundExceedsPayment,
    SubscriptionInactive,
    TenantBusy,
    UserLimit,
    ValidationError,
)
from dropgate.http import listspecs as L
from dropgate.http.idempotency import REPLAYED
from dropgate.http.jsonresponse import JsonResponse
from dropgate.http.routes import lists
from dropgate.http.routing import ApiRoutes, Call
from dropgate.ids import check_id, dt_to_ms, ms_to_dt
from dropgate.models.lists import OfferPage
from dropgate.models.offers import (
    Offer,
    OfferCreate,
    OfferInventory,
    OfferList,
    OfferPatch,
    Purchase,
    PurchaseCreated,
    PurchaseRefund,
    PurchaseRequest,
    SandboxResult,
    WebhookAck,
)
from dropgate.money import MAX_MINOR, format_amount, parse_amount
from dropgate.persistence.lists import Page

routes = ApiRoutes("offers")
_PURCHASE_ERRORS = [InsufficientInventory, OfferUnavailable, QuantityLimit, UserLimit, SubscriptionInactive,
                    RateLimited, PaymentProviderUnavailable, IdempotencyKeyInUse,
                    IdempotencyKeyReused, TenantBusy, NotFound]


# Fields the API model and the offer's spec name alike: passed through, not restated.
_VIEW_SAME = tuple(n for n in Offer.__struct_fields__ if n in OfferState.__struct_fields__)
_CREATE_SAME = tuple(n for n in OfferCreate.__struct_fields__
                     if n in OfferState.__struct_fields__ and n != "offer_id")


def offer_view(o: OfferState) -> Offer:
    created = ms_to_dt(o.created_ms)
    assert created is not None
    d = msgspec.structs.asdict(o)
    return Offer(
        **{n: d[n] for n in _VIEW_SAME},
        price=format_amount(d["price_minor"], d["currency"]),
        expires_at=ms_to_dt(o.expires_at_ms), created_at=created,
        inventory=OfferInventory(total=o.total, available=max(0, o.available), reserved=o.reserved,
                                 sold=o.sold))


def purchase_view(p: PurchaseRecord) -> Purchase:
    expires, created = ms_to_dt(p.hold_expires_ms), ms_to_dt(p.created_ms)
    assert expires is not None and created is not None
    return Purchase(purchase_id=p.purchase_id, offer_id=p.offer_id, user_id=p.user_id,
                    quantity=p.quantity, status=p.status,  # type: ignore[arg-type]
                    amount=format_amount(p.amount_minor, p.currency), currency=p.currency,
                    expires_at=expires, created_at=created,
                    refunded_amount=format_amount(p.refunded_minor, p.currency))


@routes.post("/v1/offers", body=OfferCreate, response=Offer, status=201, errors=[AlreadyExists])
async def create_offer(call: Call[OfferCreate]) -> Offer:
    """Create an offer (an id is generated when none is given)."""
    b = call.body
    price_minor = parse_amount(b.price, b.currency, field="price")
    if price_minor * b.max_per_order > MAX_MINOR:
        # the purchase script multiplies price by quantity in Lua's doubles and its events
        # carry the amount through cjson (14 significant digits): one order's amount is
        # held to what one amount may be, so every purchase is charged exactly
        raise ValidationError(
            f"price x max_per_order must be at most {format_amount(MAX_MINOR, b.currency)} {b.currency} "
            "(the largest amount of one order).", details={"field": "max_per_order"})
    state = await call.runtime.offers.create(
        call.tenant_id, offer_id=b.offer_id, **{n: getattr(b, n) for n in _CREATE_SAME},
        price_minor=price_minor, total=b.inventory_total, expires_at_ms=dt_to_ms(b.expires_at, "expires_at"))
    return offer_view(state)


@routes.get("/v1/offers", response=OfferPage, alternatives=[OfferList],
            errors=[ValidationError, PersistenceLagging],
            query=[*lists.list_query(L.OFFERS)])
async def list_offers(call: Call[None]) -> OfferPage | OfferList | Page:
    """Offers, newest first, by ``event_id`` and ``active``, in pages (v1.1).

    The v1 form, ``?event_id=`` and nothing else, keeps its v1 answer: ``{offers}``,
    the event's active, unarchived, unexpired offers, read live from Redis in one
    round trip. Any other query (none, ``limit``, ``cursor``, ``active``,
    ``consistent``) is the list form from PostgreSQL.
    """
    if set(call.request.query) != {"event_id"}:
        return await lists.serve_list(call, L.OFFERS, (call.tenant_id,),
                                      partitions=lists.own_partitions(call))
    event_id = call.query_id("event_id", required=True)
    assert event_id is not None
    seconds, micros = await call.runtime.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    states = await call.runtime.offers.list_by_event(call.tenant_id, event_id)
    return OfferList(offers=[offer_view(o) for o in states if o.listed(now_ms)])


@routes.get("/v1/offers/{offer_id}", response=Offer, errors=[NotFound])
async def get_offer(call: Call[None]) -> Offer:
    """An offer with its inventory: total, available, reserved, sold."""
    return offer_view(await call.runtime.offers.read(call.tenant_id, call.path_id("offer_id")))


@routes.patch("/v1/offers/{offer_id}", body=OfferPatch, response=Offer,
              errors=[NotFound, InventoryConflict])
async def update_offer(call: Call[OfferPatch]) -> Offer:
    """Change inventory_total (never below reserved + sold), active, archived, expires_at,
    max_per_user, success_url, cancel_url (null removes the last four)."""
    b = call.body
    state = await call.runtime.offers.update(
        call.tenant_id, call.path_id("offer_id"), total=b.inventory_total, active=b.active,
        archived=b.archived,
        expires_at_ms=b.expires_at if b.expires_at is msgspec.UNSET else dt_to_ms(b.expires_at, "expires_at"),
        max_per_user=b.max_per_user, success_url=b.success_url, cancel_url=b.cancel_url)
    return offer_view(state)


@routes.post("/v1/offers/{offer_id}/purchase", body=PurchaseRequest, response=PurchaseCreated,
             status=201, errors=_PURCHASE_ERRORS, keys_in_handler=True, hot=True)
async def purchase_offer(call: Call[PurchaseRequest]) -> web.StreamResponse:
    """Hold units and open a checkout session (Idempotency-Key: Stripe's semantics)."""
    answer = await call.runtime.purchases.purchase(
        call.tenant_id, call.path_id("offer_id"), user_id=call.body.user_id,
        quantity=call.body.quantity, idempotency_key=call.request.headers.get("Idempotency-Key"))
    return JsonResponse(answer.body, answer.status, REPLAYED if answer.replayed else None)


@routes.get("/v1/purchases/{purchase_id}", response=Purchase, errors=[NotFound])
async def get_purchase(call: Call[None]) -> Purchase:
    """A purchase and its status: pending, paid, released, expired, refunded, canceled,
    partially_refunded, disputed, failed."""
    return purchase_view(await call.runtime.offers.purchase(call.tenant_id,
                                                            call.path_id("purchase_id")))


@routes.post("/v1/purchases/{purchase_id}/cancel", response=Purchase,
             errors=[NotFound, PurchaseNotPending, PaymentProviderUnavailable])
async def cancel_purchase(call: Call[None]) -> Purchase:
    """Cancel a pending purchase: its checkout session is expired at the provider and
    its hold released (status canceled); a payment that completes later is refunded."""
    return purchase_view(await call.runtime.refunds.cancel(call.tenant_id, call.path_id("purchase_id")))


@routes.post("/v1/purchases/{purchase_id}/refund", body=PurchaseRefund, response=Purchase,
             errors=[NotFound, PurchaseNotPaid, RefundExceedsPayment, PaymentProviderUnavailable])
async def refund_purchase(call: Call[PurchaseRefund]) -> Purchase:
    """Refund a paid purchase through the provider, in full (default) or in part; a full
    refund with restock (default) returns its units (Idempotency-Key honoured)."""
    purchase_id = call.path_id("purchase_id")
    amount_minor = None
    if call.body.amount is not None:
        p = await call.runtime.offers.purchase(call.tenant_id, purchase_id)
        amount_minor = parse_amount(call.body.amount, p.currency)
    return purchase_view(await call.runtime.refunds.refund(
        call.tenant_id, purchase_id, amount_minor=amount_minor, restock=call.body.restock,
        idempotency_key=call.request.headers.get("Idempotency-Key")))


@routes.post("/v1/webhooks/stripe", auth="public", response=WebhookAck,
             errors=[InvalidSignature, ValidationError, PaymentProviderUnavailable],
             headers=["Stripe-Signature"],
             request_content={"application/json": {"schema": {"type": "object"}}})
async def stripe_webhook(call: Call[None]) -> WebhookAck:
    """A Stripe event (signature verified with the stripe library)."""
    payload = await call.request.read()
    outcome = await call.runtime.webhooks.handle(payload, call.request.headers.get("Stripe-Signature"))
    return WebhookAck(received=True, outcome=outcome)


# -- the sandbox provider's checkout pages (checkout/pages.py) ------------------------------
@routes.get("/v1/sandbox/checkout/{session_id}", auth="public", response_content_type="text/html",
            errors=[NotFound])
async def sandbox_checkout_page(call: Call[None]) -> web.Response:
    """The sandbox's checkout page: pay or cancel."""
    page = await call.runtime.sandbox.checkout_page(call.request.match_info["session_id"])
    return web.Response(text=page, content_type="text/html")


_FORM = "application/x-www-form-urlencoded"
# a browser's form post (the page's buttons): 303 to the purchase's success_url / cancel_url
_SEE_OTHER = {303: None}


async def _sandbox_send(call: Call[None], event_type: str, *, paid: bool) -> SandboxResult | web.Response:
    # sent over HTTP to this API's own webhook endpoint, exactly as Stripe would. A
    # browser's form post (the page's buttons) goes on where Stripe's page would send it;
    # its Cancel, like Stripe's back link, sends no event: the hold expires (or is canceled)
    session_id = call.request.match_info["session_id"]
    browser = call.request.content_type == _FORM
    if browser and not paid:
        urls = await call.runtime.sandbox.redirects(session_id)
        return web.Response(status=303, headers={"Location": urls.cancel_url})
    result = await call.runtime.sandbox.send(session_id, event_type,
                                             origin=str(call.request.url.origin()))
    if not browser:
        return result
    urls = await call.runtime.sandbox.redirects(session_id)
    return web.Response(status=303, headers={"Location": urls.success_url})


@routes.post("/v1/sandbox/checkout/{session_id}/complete", auth="public", response=SandboxResult,
             errors=[NotFound], other_responses=_SEE_OTHER)
async def sandbox_complete(call: Call[None]) -> SandboxResult | web.Response:
    """Pay a sandbox session: sends a signed checkout.session.completed webhook."""
    return await _sandbox_send(call, "checkout.session.completed", paid=True)


@routes.post("/v1/sandbox/checkout/{session_id}/expire", auth="public", response=SandboxResult,
             errors=[NotFound], other_responses=_SEE_OTHER)
async def sandbox_expire(call: Call[None]) -> SandboxResult | web.Response:
    """Abandon a sandbox session: sends a signed checkout.session.expired webhook."""
    return await _sandbox_send(call, "checkout.session.expired", paid=False)


# -- dropgate's own return pages (checkout/pages.py, checkout/redirects.py) -----------------
_PAGE_QUERY = [("tenant_id", "The purchase's tenant", True), ("purchase_id", "The purchase", True),
               ("session_id", "The Checkout session (filled in by the provider; informative)", False)]


async def _purchase_page(call: Call[None], *, cancelled: bool) -> web.Response:
    query = call.request.query
    unknown = next((name for name in query if name not in {n for n, _, _ in _PAGE_QUERY}), None)
    if unknown is not None:
        raise ValidationError(f"Unknown query parameter {unknown!r}.", details={"field": unknown})
    tenant_id, purchase_id = query.get("tenant_id"), query.get("purchase_id")
    if not purchase_id:
        raise ValidationError("Query parameter purchase_id is required.",
                              details={"field": "purchase_id"})
    if not tenant_id:
        tenant_id = await _tenant_of_purchase(call, purchase_id)
    page = await purchase_page(call.runtime.offers, tenant_id, purchase_id, cancelled=cancelled)
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


TENANT_OF_PURCHASE_SQL = "SELECT tenant_id FROM offer_purchases WHERE purchase_id = $1 LIMIT 2"
"""At most two: one is the answer, two are an id two tenants share (neither is guessed)."""


async def _tenant_of_purchase(call: Call[None], purchase_id: str) -> str:
    """The tenant of a purchase named by id alone, as docs/api.md links it.

    Purchase ids are random and unique across tenants; the durable record knows each
    one's tenant (the primary key of ``offer_purchases`` leads with the purchase id:
    migration 0024). Should two tenants share an id, neither is guessed: 404. A purchase
    not yet persisted (the write-behind lag is milliseconds, a buyer returns minutes
    later) is a 404."""
    check_id(purchase_id, "purchase_id")
    rows = await call.runtime.pool.fetch(TENANT_OF_PURCHASE_SQL, purchase_id)
    if len(rows) != 1:
        raise NotFound("No such purchase.", details={"purchase_id": purchase_id})
    return str(rows[0]["tenant_id"])


@routes.get("/checkout/done", auth="public", response_content_type="text/html",
            errors=[NotFound, ValidationError], query=_PAGE_QUERY)
async def checkout_done(call: Call[None]) -> web.Response:
    """Where a paid Checkout returns the buyer: the purchase and its live status."""
    return await _purchase_page(call, cancelled=False)


@routes.get("/checkout/cancelled", auth="public", response_content_type="text/html",
            errors=[NotFound, ValidationError], query=_PAGE_QUERY)
async def checkout_cancelled(call: Call[None]) -> web.Response:
    """Where a cancelled Checkout returns the buyer: the purchase and its live status."""
    return await _purchase_page(call, cancelled=True)
