"""Outbound webhook endpoints (tenant): register, list, delete, and each one's delivery log."""

from __future__ import annotations

from dropgate.errors import NotFound, ValidationError
from dropgate.http import listspecs as L
from dropgate.http.routes.lists import serve_list
from dropgate.http.routing import ApiRoutes, Call
from dropgate.models.webhooks import (
    WebhookDeliveryList,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
)
from dropgate.persistence.lists import Page
from dropgate.webhooks.signing import new_secret
from dropgate.webhooks.store import check_events
from dropgate.webhooks.urls import check_registration

routes = ApiRoutes("webhooks")
# the paging parameters of every list (routes/lists.py), consistent answered at once
_PAGE = (("limit", "page size, 1-1000 (default 100)", False),
         ("cursor", "the previous page's next_cursor", False),
         ("consistent", "accepted for every list; endpoints and deliveries are written to "
                        "PostgreSQL directly, so every list of them is consistent", False))


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


@routes.get("/v1/webhook-endpoints", response=WebhookEndpointList, errors=[ValidationError],
            query=_PAGE)
async def list_endpoints(call: Call[None]) -> Page:
    """The tenant's webhook endpoints, newest first, never their secrets."""
    return await serve_list(call, L.WEBHOOK_ENDPOINTS, (call.tenant_id,), partitions=())


@routes.delete("/v1/webhook-endpoints/{id}", status=204, errors=[NotFound])
async def delete_endpoint(call: Call[None]) -> None:
    """Delete a webhook endpoint; what it was still owed is dropped with it."""
    await call.runtime.webhook_store.delete_endpoint(call.tenant_id, call.path_id("id"))


@routes.get("/v1/webhook-endpoints/{id}/deliveries", response=WebhookDeliveryList,
            errors=[ValidationError, NotFound],
            query=(*((n, f.description, False) for n, f in L.WEBHOOK_DELIVERIES.filters.items()), *_PAGE))
async def list_deliveries(call: Call[None]) -> Page:
    """An endpoint's delivery log, newest first (404: not one of the tenant's endpoints)."""
    endpoint = await call.runtime.webhook_store.endpoint(call.tenant_id, call.path_id("id"))
    return await serve_list(call, L.WEBHOOK_DELIVERIES, (endpoint.endpoint_id,), partitions=())
