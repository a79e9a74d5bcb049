"""Outbound webhooks: endpoints, deliveries and the public event types (docs/api.md)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from dropgate.models.common import Struct, Text, Timestamp

EVENT_TYPES: tuple[str, ...] = (
    "invite.redeemed", "promo.redeemed", "promo.use_rolled_back",
    "purchase.created", "purchase.paid", "purchase.canceled", "purchase.expired",
    "purchase.refunded", "purchase.disputed", "codes.uploaded", "codes.pool_low",
    "withdrawal.created", "withdrawal.completed", "withdrawal.rejected",
    "tenant.subscription_changed",
)
"""Every event type an endpoint may subscribe to (``["*"]``: all of them)."""

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048, pattern=r"^[^\x00-\x1f\x7f\s]*$",
                                  description="absolute https URL (http only where allowed)")]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                        description="a public event type, or \"*\"")]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


class WebhookEndpointCreate(Struct, kw_only=True):
    url: Url
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES))]
    description: Text | None = None


class WebhookEndpoint(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An endpoint as lists show it: never its secret."""

    endpoint_id: str
    url: str
    events: list[str]
    status: Literal["enabled", "disabled"]
    created_at: Timestamp
    description: str | None = None
    disabled_at: Timestamp | None = None


class WebhookEndpointCreated(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer to a registration: the only time ``secret`` is shown."""

    endpoint_id: str
    url: str
    events: list[str]
    secret: str
    status: Literal["enabled", "disabled"]
    created_at: Timestamp
    description: str | None = None


class WebhookDelivery(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event owed to one endpoint, with the outcome of its latest attempt."""

    delivery_id: str
    event_id: str
    type: str
    status: DeliveryStatus
    attempts: int
    created_at: Timestamp
    next_attempt_at: Timestamp | None = None
    last_attempt_at: Timestamp | None = None
    response_status: int | None = None
    error: str | None = None
    delivered_at: Timestamp | None = None


class WebhookEndpointList(msgspec.Struct, kw_only=True):
    data: list[WebhookEndpoint]
    has_more: bool
    next_cursor: str | None


class WebhookDeliveryList(msgspec.Struct, kw_only=True):
    data: list[WebhookDelivery]
    has_more: bool
    next_cursor: str | None


class WebhookEventBody(msgspec.Struct, kw_only=True):
    """What each delivery POSTs (the signed bytes)."""

    id: str
    type: str
    created: str
    tenant_id: str
    data: dict[str, object]
