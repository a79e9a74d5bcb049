"""The payment provider's webhooks: verified, then applied by the offer scripts.

``checkout.session.completed`` (and ``async_payment_succeeded``) confirms the hold
(``offer_confirm-7.lua``; a payment for a released hold re-takes the units or is
refunded through the provider; so is one for a canceled or failed purchase),
``checkout.session.expired`` releases it, ``checkout.session.async_payment_failed``
releases it as ``failed``; a repeated event id changes nothing. The charge events
(``charge.refunded``, ``charge.dispute.created``) are ``checkout/charges.py``. The
signature is checked with the ``stripe`` library, here above the engine: the engine
never sees the provider.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import stripe

from dropgate.checkout.charges import CHARGE_EVENTS, ChargeEvents
from dropgate.checkout.payments.base import PaymentProvider, PaymentProviderError
from dropgate.engine.offers import Offers
from dropgate.errors import InvalidSignature, NotFound, PaymentProviderUnavailable, ValidationError
from dropgate.ids import check_id

log = logging.getLogger("dropgate.webhooks")


class Webhooks:
    """Applies the provider's checkout events to purchases."""

    def __init__(self, offers: Offers, provider: PaymentProvider) -> None:
        self._offers = offers
        self.provider = provider
        self._charges = ChargeEvents(offers, provider)

    async def handle(self, payload: bytes, signature: str | None) -> str:
        """Verify and apply one provider event; return what it did."""
        try:
            stripe.Webhook.construct_event(payload.decode("utf-8", "replace"), signature or "",
                                           self.provider.webhook_secret)
            # verified: read the same bytes as plain JSON (StripeObject is not a dict)
            event: dict[str, Any] = msgspec.json.decode(payload, type=dict[str, Any])
            event_type = str(event["type"])
            session: dict[str, Any] = event["data"]["object"]
            if not isinstance(session, dict):
                raise ValueError("data.object is not an object")
        except (stripe.SignatureVerificationError, ValueError, KeyError, TypeError,
                msgspec.DecodeError) as exc:
            raise InvalidSignature(f"The webhook signature is invalid: {exc}") from None
        if event_type in CHARGE_EVENTS:
            try:
                event_id = check_id(str(event["id"]), "event_id")
            except ValidationError:
                return "ignored"
            return await self._charges.handle(event_type, event_id, session)
        if event_type not in ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                              "checkout.session.expired", "checkout.session.async_payment_failed"):
            return "ignored"
        meta = session.get("metadata") or {}
        try:
            tenant_id = check_id(str(meta.get("tenant_id", "")), "tenant_id")
            offer_id = check_id(str(meta.get("offer_id", "")), "offer_id")
            purchase_id = check_id(str(meta.get("purchase_id", "")), "purchase_id")
            event_id = check_id(str(event["id"]), "event_id")
        except ValidationError:
            log.warning("webhook %s %s: no dropgate purchase in its metadata; ignored",
                        event.get("id"), event_type)
            return "ignored"
        try:
            if event_type in ("checkout.session.expired", "checkout.session.async_payment_failed"):
                status = "expired" if event_type == "checkout.session.expired" else "failed"
                out = await self._offers.release(tenant_id, offer_id, purchase_id, status=status,
                                                 event_id=event_id, event_type=event_type)
                return out.outcome
            if session.get("payment_status") not in ("paid", "no_payment_required"):
                return "awaiting_payment"
            payment_intent = str(session.get("payment_intent") or "")
            out = await self._offers.confirm(tenant_id, offer_id, purchase_id, event_id=event_id,
                                             session_id=str(session.get("id") or ""),
                                             payment_intent=payment_intent)
        except NotFound:
            log.warning("webhook %s %s: purchase %s of tenant %s / offer %s unknown; ignored",
                        event_id, event_type, purchase_id, tenant_id, offer_id)
            return "unknown_purchase"
        if out.outcome == "refund":
            await self._refund(tenant_id, offer_id, purchase_id, out.payment_intent or payment_intent,
                               out.quantity)
        return out.outcome

    async def _refund(self, tenant_id: str, offer_id: str, purchase_id: str, payment_intent: str,
                      quantity: int) -> None:
        try:
            refund_id = await self.provider.refund(payment_intent=payment_intent, purchase_id=purchase_id)
        except PaymentProviderError as exc:
            log.warning("refund failed (the provider will redeliver the event and it is retried): "
                        "offer=%s tenant=%s purchase=%s quantity=%d payment_intent=%s; error: %s",
                        offer_id, tenant_id, purchase_id, quantity, payment_intent, exc)
            raise PaymentProviderUnavailable("The refund could not be made yet; redeliver the event.",
                                             details={"purchase_id": purchase_id}) from None
        await self._offers.refund_done(tenant_id, offer_id, purchase_id, refund_id=refund_id)
        log.info("payment for an expired hold refunded (no inventory left): offer=%s tenant=%s "
                 "purchase=%s quantity=%d refund=%s", offer_id, tenant_id, purchase_id, quantity,
                 refund_id)
