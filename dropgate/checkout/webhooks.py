"""The payment provider's webhooks: verified, then applied by the offer scripts.

``checkout.session.completed`` (and ``async_payment_succeeded``) confirms the hold
(``offer_confirm-8.lua``; a payment for a released hold re-takes the units or is
refunded through the provider; so is one for a canceled or failed purchase),
``checkout.session.expired`` releases it, ``checkout.session.async_payment_failed``
releases it as ``failed``; a repeated event id changes nothing. The charge events
(``charge.refunded``, ``charge.dispute.created``) are ``checkout/charges.py``. The
signature is checked with the ``stripe`` library, here above the engine: the engine
never sees the provider.

A signed event is trusted to come from the provider, not to name the right purchase:
its session id, amount and currency must be the purchase's (``_mismatch``), else it
changes nothing and answers ``mismatch`` (logged, counted on ``/metrics``). A signed
event that is not a readable event is a 400 naming what is wrong, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import stripe

from dropgate.checkout.charges import CHARGE_EVENTS, ChargeEvents
from dropgate.checkout.payments.base import PaymentProvider, PaymentProviderError
from dropgate.checkout.payments.sandbox import SandboxProvider, session_id_for
from dropgate.engine.offers import Offers, PurchaseRecord
from dropgate.errors import InvalidSignature, NotFound, PaymentProviderUnavailable, ValidationError
from dropgate.ids import check_id

log = logging.getLogger("dropgate.webhooks")


class Webhooks:
    """Applies the provider's checkout events to purchases."""

    def __init__(self, offers: Offers, provider: PaymentProvider) -> None:
        self._offers = offers
        self.provider = provider
        self.mismatches = 0  # signed events that named a purchase they do not match (/metrics)
        self._charges = ChargeEvents(offers, provider)

    def _verified(self, payload: bytes, signature: str | None) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """(event, its type, its data.object) of a correctly signed, readable event."""
        try:
            stripe.WebhookSignature.verify_header(payload, signature or "", self.provider.webhook_secret,
                                                  tolerance=stripe.Webhook.DEFAULT_TOLERANCE)
        except (stripe.SignatureVerificationError, ValueError, TypeError):
            raise InvalidSignature() from None
        # signed by the provider, yet read defensively: the message names the part, the
        # decoder's own text (and any traceback) stays out of the answer
        try:
            event = msgspec.json.decode(payload, type=dict[str, Any])
        except msgspec.DecodeError:
            raise ValidationError("The webhook event is not a JSON object.") from None
        data = event.get("data")
        session = data.get("object") if isinstance(data, dict) else None
        for field, value in (("id", event.get("id")), ("type", event.get("type"))):
            if not isinstance(value, str) or not value:
                raise ValidationError(f"The webhook event has no {field}.", details={"field": field})
        if not isinstance(session, dict):
            raise ValidationError("The webhook event's data.object is not an object.",
                                  details={"field": "data.object"})
        return event, str(event["type"]), session

    def _expected_session(self, p: PurchaseRecord) -> str | None:
        """The checkout session the purchase was given (the sandbox's is derived from the
        purchase, so it is known before the 201's store lands)."""
        if p.session_id:
            return p.session_id
        if isinstance(self.provider, SandboxProvider):
            return session_id_for(p.tenant_id, p.purchase_id)
        return None

    def _mismatch(self, event_type: str, session: dict[str, Any], p: PurchaseRecord) -> str | None:
        """Why the event's session is not this purchase's (None: it is). A completed
        session must carry the purchase's session id, amount and currency; an expired one
        its session id."""
        expected = self._expected_session(p)
        if expected is None:  # the session is not recorded yet: the provider redelivers
            raise PaymentProviderUnavailable("The purchase's checkout session is not recorded yet; "
                                             "redeliver the event.", details={"purchase_id": p.purchase_id})
        got = session.get("id")
        if got != expected:
            return f"session id {got!r} is not the purchase's {expected!r}"
        if event_type in ("checkout.session.expired", "checkout.session.async_payment_failed"):
            return None
        amount, currency = session.get("amount_total"), session.get("currency")
        if type(amount) is not int or amount != p.amount_minor:
            return f"amount_total {amount!r} is not the purchase's {p.amount_minor}"
        if not isinstance(currency, str) or currency.lower() != p.currency.lower():
            return f"currency {currency!r} is not the purchase's {p.currency!r}"
        return None

    async def _matches(self, event_id: str, event_type: str, session: dict[str, Any],
                       tenant_id: str, purchase_id: str) -> bool:
        """True when the event may act on the purchase; else logged and counted (NotFound
        when there is no such purchase)."""
        p = await self._offers.purchase(tenant_id, purchase_id)
        why = self._mismatch(event_type, session, p)
        if why is None:
            return True
        self.mismatches += 1
        log.warning("webhook %s %s does not match purchase %s of tenant %s / offer %s (%s); "
                    "nothing changed", event_id, event_type, purchase_id, tenant_id, p.offer_id, why)
        return False

    async def handle(self, payload: bytes, signature: str | None) -> str:
        """Verify and apply one provider event; return what it did."""
        event, event_type, session = self._verified(payload, signature)
        if event_type in CHARGE_EVENTS:
            try:
                event_id = check_id(str(event["id"]), "event_id")
            except ValidationError:
                return "ignored"
            outcome = await self._charges.handle(event_type, event_id, session)
            if outcome == "mismatch":
                self.mismatches += 1
            return outcome
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
            if not await self._matches(event_id, event_type, session, tenant_id, purchase_id):
                return "mismatch"
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
