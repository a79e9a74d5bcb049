"""Verifying dropgate's webhook deliveries on the receiving side, and the endpoints API.

::

    from dropgate.client.webhooks import verify

    event = verify(request_body, request.headers["Dropgate-Signature"], secret)

``verify`` recomputes ``HMAC-SHA256(secret, "<t>.<body>")`` over the raw body bytes
(before any JSON parsing: a re-encoded body would not match), compares in constant
time, refuses a timestamp older (or newer) than ``tolerance_s``, and returns the
decoded event ``{id, type, created, tenant_id, data}``. Deliveries are at least once:
deduplicate on ``event["id"]``, which is the same on every retry.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from dropgate.client.base import Namespace
from dropgate.client.errors import InvalidSignature
from dropgate.models.webhooks import (
    WebhookDeliveryList,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
)

SIGNATURE_HEADER = "Dropgate-Signature"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("The signature header's timestamp is not a number.") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidSignature("The signature header needs t=... and v1=....")
    return timestamp, signatures


def verify_signature(body: bytes, header: str, secret: str, *, tolerance_s: float = 300.0,
                     now: float | None = None) -> None:
    """Raise ``InvalidSignature`` unless ``header`` signs ``body`` with ``secret`` within
    ``tolerance_s`` seconds of ``now`` (0 or less: no age check)."""
    timestamp, signatures = _parse(header)
    if tolerance_s > 0 and abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise InvalidSignature("The signature's timestamp is outside the tolerance.")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidSignature("The signature does not match the body.")


def verify(body: bytes, header: str, secret: str, *, tolerance_s: float = 300.0) -> dict[str, Any]:
    """``verify_signature``, then the event as a dict (``id``, ``type``, ``created``,
    ``tenant_id``, ``data``)."""
    verify_signature(body, header, secret, tolerance_s=tolerance_s)
    try:
        event = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise InvalidSignature("The signed body is not JSON.") from None
    if not isinstance(event, dict):
        raise InvalidSignature("The signed body is not an event object.")
    return event


class WebhookEndpoints(Namespace):
    """Outbound webhook endpoints (``/v1/webhook-endpoints``) and their delivery logs."""

    async def create(self, url: str, *, events: Sequence[str], description: str | None = None,
                     idempotency_key: str | None = None) -> WebhookEndpointCreated:
        """Register an endpoint (``POST /v1/webhook-endpoints``); the answer's ``secret``
        is shown this once. Raises ``ValidationError`` (an unknown event type, a URL on a
        private network or without https)."""
        body = WebhookEndpointCreate(url=url, events=[*events], description=description)
        return await self._call("POST", "/v1/webhook-endpoints", WebhookEndpointCreated, body=body,
                                idempotency_key=idempotency_key)

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> WebhookEndpointList:
        """The tenant's endpoints, newest first, without secrets (``GET /v1/webhook-endpoints``)."""
        return await self._call("GET", "/v1/webhook-endpoints", WebhookEndpointList, query={
            "limit": None if limit is None else str(limit), "cursor": cursor})

    async def delete(self, endpoint_id: str) -> None:
        """Delete an endpoint and its pending deliveries (``DELETE /v1/webhook-endpoints/{id}``).
        Raises ``NotFound``."""
        await self._call("DELETE", "/v1/webhook-endpoints/{id}", None, path_params={"id": endpoint_id})

    async def deliveries(self, endpoint_id: str, *, status: str | None = None, limit: int | None = None,
                         cursor: str | None = None) -> WebhookDeliveryList:
        """An endpoint's delivery log, newest first
        (``GET /v1/webhook-endpoints/{id}/deliveries``). Raises ``NotFound``."""
        return await self._call("GET", "/v1/webhook-endpoints/{id}/deliveries", WebhookDeliveryList,
                                path_params={"id": endpoint_id}, query={
                                    "status": status, "cursor": cursor,
                                    "limit": None if limit is None else str(limit)})
