"""The built-in sandbox payment provider: the whole purchase flow with no Stripe account.

A checkout session is a page of this API (``/v1/sandbox/checkout/<session>``); paying
or cancelling there makes the app send itself a ``checkout.session.completed`` or
``checkout.session.expired`` event, shaped and signed exactly as Stripe does, to
``/v1/webhooks/stripe`` over HTTP, so the webhook path the sandbox exercises is the
production one. Sessions are stateless: the id names the tenant and the purchase,
the page reads the rest from the purchase. Its webhook secret is
``DROPGATE_STRIPE_WEBHOOK_SECRET`` when set, else random per process (so a
multi-process sandbox needs the variable).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec

from dropgate.checkout.payments.base import CheckoutRequest, CheckoutSession, PaymentProviderError
from dropgate.checkout.redirects import public_base
from dropgate.settings import Settings

_PREFIX = "cs_sandbox_"
_SEP = "~"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.stripe_webhook_secret or "whsec_sandbox_" + secrets.token_hex(16)
        self.public_url = public_base(settings)
        self.fail_next = 0  # tests: this many checkouts fail as if the provider were down
        self.refunds: list[tuple[str, str]] = []

    @property
    def webhook_secret(self) -> str:
        return self._secret

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise PaymentProviderError("sandbox: told to fail")
        session_id = session_id_for(request.tenant_id, request.purchase_id)
        return CheckoutSession(session_id=session_id,
                               url=f"{self.public_url}/v1/sandbox/checkout/{session_id}")

    async def refund(self, *, payment_intent: str, purchase_id: str, amount_minor: int | None = None,
                     key: str = "") -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise PaymentProviderError("sandbox: told to fail")
        self.refunds.append((payment_intent, purchase_id))
        return "re_sandbox_" + purchase_id + (f"_{key}" if key else "")

    async def expire_checkout(self, session_id: str) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise PaymentProviderError("sandbox: told to fail")

    async def payment_metadata(self, payment_intent: str) -> dict[str, str]:
        return {}  # the sandbox sends no charge events: its checkout events carry the metadata

    async def close(self) -> None:
        return None


def session_id_for(tenant_id: str, purchase_id: str) -> str:
    return f"{_PREFIX}{tenant_id}{_SEP}{purchase_id}"


def parse_session_id(session_id: str) -> tuple[str, str] | None:
    """(tenant id, purchase id) of a sandbox session id, or None."""
    if not session_id.startswith(_PREFIX):
        return None
    tenant_id, sep, purchase_id = session_id[len(_PREFIX):].partition(_SEP)
    if not sep or not tenant_id or not purchase_id:
        return None
    return tenant_id, purchase_id


def checkout_event(event_type: str, *, session_id: str, purchase: dict[str, Any]) -> bytes:
    """A Stripe event body (``checkout.session.completed`` / ``.expired``) for a sandbox session."""
    paid = event_type == "checkout.session.completed"
    now = int(time.time())
    session = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete" if paid else "expired",
        "payment_status": "paid" if paid else "unpaid",
        "payment_intent": f"pi_sandbox_{purchase['purchase_id']}" if paid else None,
        "amount_total": purchase["amount_minor"],
        "currency": purchase["currency"],
        "client_reference_id": purchase["purchase_id"],
        "expires_at": purchase["hold_expires_ms"] // 1000,
        "metadata": {"purchase_id": purchase["purchase_id"], "tenant_id": purchase["tenant_id"],
                     "offer_id": purchase["offer_id"], "user_id": purchase["user_id"]},
    }
    return msgspec.json.encode({
        "id": "evt_sandbox_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": session},
    })


__all__ = ["SandboxProvider", "checkout_event", "parse_session_id", "session_id_for"]
