"""The payment-provider interface and what every provider shares.

A provider opens a checkout session for a held purchase and refunds a payment that
came too late. Everything that can go wrong with a provider (HTTP error, timeout,
a malformed answer) reaches the engine as ``PaymentProviderError``, which releases
the hold and answers 503 ``PAYMENT_PROVIDER_UNAVAILABLE``. Configuration problems
(``ProviderConfigError``) are raised when the provider is built, at start-up, never
on a purchase.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Protocol

import msgspec


class ProviderConfigError(Exception):
    """The provider cannot be built from the settings (say which setting, and how to fix it)."""


class PaymentProviderError(Exception):
    """A provider call failed or timed out; ``str`` says how, for the log line."""


class PaymentProviderRefused(PaymentProviderError):
    """The provider answered and refused the request (HTTP 4xx): asking again will not
    help (a session already completed or expired, a charge already refunded)."""


class CheckoutRequest(msgspec.Struct, frozen=True, kw_only=True):
    purchase_id: str
    tenant_id: str
    offer_id: str
    user_id: str
    quantity: int
    unit_amount_minor: int
    currency: str
    name: str
    expires_at_s: int  # the hold's expiry: the session must not outlive it
    success_url: str  # where the buyer returns (``checkout/redirects.py``)
    cancel_url: str


class CheckoutSession(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's session for a hold. Neither field holds a control character (a
    provider checks what it was sent): a pending purchase keeps both on one line
    (``lua/lib/dg_purchase_session.lua``)."""

    session_id: str
    url: str


class PaymentProvider(Protocol):
    name: str

    @property
    def webhook_secret(self) -> str:
        """The secret webhooks for this provider are signed with."""
        ...

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession: ...

    async def refund(self, *, payment_intent: str, purchase_id: str, amount_minor: int | None = None,
                     key: str = "") -> str:
        """Refund ``amount_minor`` of a payment (None: in full); return the refund id.
        Idempotent per purchase and ``key`` (one key, one refund)."""
        ...

    async def expire_checkout(self, session_id: str) -> None:
        """Expire an open checkout session, so it can no longer be paid."""
        ...

    async def payment_metadata(self, payment_intent: str) -> dict[str, str]:
        """The metadata of a payment (the purchase it pays), for events that lack it."""
        ...

    async def close(self) -> None: ...


def metadata(request: CheckoutRequest) -> dict[str, str]:
    """What the webhook needs to find the purchase again (Stripe echoes it back)."""
    return {"purchase_id": request.purchase_id, "tenant_id": request.tenant_id,
            "offer_id": request.offer_id, "user_id": request.user_id}


def sign_payload(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header value for ``payload``, computed as Stripe does
    (``t=<unix>,v1=<hex hmac-sha256 of "<t>.<payload>">``), so ``stripe.Webhook``
    verifies it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
