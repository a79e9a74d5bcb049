"""The provider's charge events: refunds made in its dashboard, and disputes.

- ``charge.refunded`` (``data.object`` a charge): each refund it lists that succeeded
  (or is pending) is applied by ``offer_refund-5.lua`` once per refund id, for no
  more than is left of the payment, restocking on a full refund, exactly as the
  refund route does. A charge that lists no refunds (newer API versions) is applied
  by its cumulative ``amount_refunded``: only what passes what is already applied.
- ``charge.dispute.created`` (``data.object`` a dispute): the purchase becomes
  ``disputed`` (``offer_dispute-4.lua``); its units stay sold.

Both find their purchase by the metadata dropgate gave the payment (the charge
inherits it; a dispute does not, so the payment intent's metadata is asked of the
provider), and apply only when the event's payment intent is the purchase's own: an
event naming another payment changes nothing (``mismatch``).
"""

from __future__ import annotations

import logging
from typing import Any

from dropgate.checkout.payments.base import PaymentProvider, PaymentProviderError
from dropgate.engine.offers import Offers
from dropgate.errors import NotFound, PaymentProviderUnavailable, ValidationError
from dropgate.ids import check_id

log = logging.getLogger("dropgate.webhooks")

CHARGE_EVENTS = frozenset({"charge.refunded", "charge.dispute.created"})
_APPLIED_REFUND_STATES = frozenset({"succeeded", "pending", None})


class ChargeEvents:
    def __init__(self, offers: Offers, provider: PaymentProvider) -> None:
        self._offers = offers
        self._provider = provider

    async def _purchase_of(self, obj: dict[str, Any]) -> tuple[str, str, str] | None:
        """(tenant, offer, purchase) named by the object's or its payment's metadata."""
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or "purchase_id" not in meta:
            intent = obj.get("payment_intent")
            if not isinstance(intent, str) or not intent:
                return None
            try:
                meta = await self._provider.payment_metadata(intent)
            except PaymentProviderError as exc:
                log.warning("webhook: the payment %s could not be looked up (the provider will "
                            "redeliver): %s", intent, exc)
                raise PaymentProviderUnavailable("The payment could not be looked up yet; redeliver "
                                                 "the event.") from None
        try:
            return (check_id(str(meta.get("tenant_id", "")), "tenant_id"),
                    check_id(str(meta.get("offer_id", "")), "offer_id"),
                    check_id(str(meta.get("purchase_id", "")), "purchase_id"))
        except ValidationError:
            return None

    async def handle(self, event_type: str, event_id: str, obj: dict[str, Any]) -> str:
        found = await self._purchase_of(obj)
        if found is None:
            log.warning("webhook %s %s: no dropgate purchase in its metadata; ignored", event_id, event_type)
            return "ignored"
        tenant_id, offer_id, purchase_id = found
        try:
            p = await self._offers.purchase(tenant_id, purchase_id)
        except NotFound:
            log.warning("webhook %s %s: purchase %s of tenant %s unknown; ignored", event_id, event_type,
                        purchase_id, tenant_id)
            return "unknown_purchase"
        intent = obj.get("payment_intent")
        if p.offer_id != offer_id or not p.payment_intent or intent != p.payment_intent:
            log.warning("webhook %s %s: payment %r is not purchase %s's (%r); nothing changed",
                        event_id, event_type, intent, purchase_id, p.payment_intent)
            return "mismatch"
        try:
            if event_type == "charge.dispute.created":
                out = await self._offers.dispute(tenant_id, offer_id, purchase_id, event_id=event_id,
                                                 event_type=event_type)
                return out.outcome
            return await self._refunded(tenant_id, offer_id, purchase_id, event_id, obj)
        except NotFound:
            return "unknown_purchase"

    async def _refunded(self, tenant_id: str, offer_id: str, purchase_id: str, event_id: str,
                        charge: dict[str, Any]) -> str:
        listed = (charge.get("refunds") or {}).get("data") if isinstance(charge.get("refunds"), dict) else None
        todo: list[tuple[str, int]] = []
        if isinstance(listed, list):
            for r in listed:
                if (isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("status") in _APPLIED_REFUND_STATES
                        and isinstance(r.get("amount"), int) and r["amount"] > 0):
                    todo.append((r["id"], int(r["amount"])))
        else:
            total = charge.get("amount_refunded")
            p = await self._offers.purchase(tenant_id, purchase_id)
            if isinstance(total, int) and total > p.refunded_minor:
                # one refund per cumulative total: a redelivery names the same one
                todo.append((f"{charge.get('id')}:{total}", total - p.refunded_minor))
        # the event id is recorded with the last call only: a redelivery after a crash
        # applies what was missed (the refund ids keep the rest from counting twice); an
        # event with nothing to apply is recorded alone (refund id "-", amount 0: a no-op)
        todo = todo or [("-", 0)]
        outcome = "noop"
        for i, (refund_id, amount) in enumerate(todo):
            last = i == len(todo) - 1
            out = await self._offers.refund(tenant_id, offer_id, purchase_id, refund_id=refund_id,
                                            amount_minor=amount, restock=True,
                                            event_id=event_id if last else "", event_type="charge.refunded")
            if out.outcome in ("refunded", "partially_refunded") or outcome == "noop":
                outcome = out.outcome
        return outcome
