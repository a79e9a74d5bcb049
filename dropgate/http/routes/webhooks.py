"""Outbound webhook endpoints (tenant): register, list, delete, and each one's delivery log."""

from __future__ import annotations

from dropgate.errors import NotFound, ValidationError
from dropgate.http.routing import ApiRoutes, Call
from dropgate.models.webhooks import (
    WebhookDeliveryList,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
)
from dropgate.webhooks.signing import new_secret
from dropgate.webhooks.store import check_events, decode_cursor, encode_cursor, parse_limit
from dropgate.webhooks.urls import check_registration

routes = ApiRoutes("webhooks")
_PAGE = (("limit", "page size, 1-1000 (default 100)", False),
         ("cursor", "the previous page's next_cursor", False),
         ("consistent", "accepted for every list; endpoints and deliveries are written to "
                        "PostgreSQL directly, so every list of them is consistent", False))
_STATUSES = ("pending", "succeeded", "failed")


def _consistent(call: Call[None]) -> None:
    value = call.request.query.get("consistent")
    if value is not None and value not in ("true", "false"):
        raise ValidationError("consistent must be true or false.", details={"field": "consistent"})


@routes.post("/v1/webhook-endpoints", body=WebhookEndpointCreate, response=WebhookEndpointCreated,
             status=201)
async def create_endpoint(call: Call[WebhookEndpointCreate]) -> WebhookEndpointCreated:
    """Register a webhook endpoint; its signing secret is shown this once."""
    b, rt = call.body, call.runtime
    events = check_events(b.events)
    await check_registration(b.url, allow_private=rt.settings.webhook_allow_private,
                             allow_http=rt.settings.webhook_allow_http, resolve=rt.webhook_resolve)
    endpoint = await rt.webhook_store.create_endpoint(
        call.tenant_id, url=b.url, events=events, description=b.description, secret=new_secret())
    return WebhookEndpointCreated(
        endpoint_id=endpoint.endpoint_id, url=endpoint.url, events=list(endpoint.events),
        secret=endpoint.secret, status="enabled", created_at=endpoint.created_at,
        description=endpoint.description)


@routes.get("/v1/webhook-endpoints", response=WebhookEndpointList, query=_PAGE)
async def list_endpoints(call: Call[None]) -> WebhookEndpointList:
    """The tenant's webhook endpoints, newest first, never their secrets."""
    _consistent(call)
    limit = parse_limit(call.request.query.get("limit"))
    before = decode_cursor(call.request.query.get("cursor"))
    endpoints, more = await call.runtime.webhook_store.list_endpoints(
        call.tenant_id, limit=limit, before=before)
    return WebhookEndpointList(data=[e.view() for e in endpoints], has_more=more,
                               next_cursor=encode_cursor(endpoints[-1].seq) if more else None)


@routes.delete("/v1/webhook-endpoints/{id}", status=204, errors=[NotFound])
async def delete_endpoint(call: Call[None]) -> None:
    """Delete a webhook endpoint; what it was still owed is dropped with it."""
    await call.runtime.webhook_store.delete_endpoint(call.tenant_id, call.path_id("id"))


@routes.get("/v1/webhook-endpoints/{id}/deliveries", response=WebhookDeliveryList, errors=[NotFound],
            query=(("status", "pending, succeeded or failed", False), *_PAGE))
async def list_deliveries(call: Call[None]) -> WebhookDeliveryList:
    """An endpoint's delivery log, newest first."""
    _consistent(call)
    status = call.request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise ValidationError("status must be pending, succeeded or failed.", details={"field": "status"})
    limit = parse_limit(call.request.query.get("limit"))
    before = decode_cursor(call.request.query.get("cursor"))
    store = call.runtime.webhook_store
    endpoint = await store.endpoint(call.tenant_id, call.path_id("id"))
    rows, more = await store.list_deliveries(endpoint.endpoint_id, status=status, limit=limit,
                                             before=before)
    return WebhookDeliveryList(data=[d for _, d in rows], has_more=more,
                               next_cursor=encode_cursor(rows[-1][0]) if more else None)
