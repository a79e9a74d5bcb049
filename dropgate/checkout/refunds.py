"""Cancels and refunds of purchases: the provider first, then one script step.

``POST /v1/purchases/{id}/cancel`` (pending only): the checkout session is expired at
the provider, so it can no longer be paid, then ``offer_release-8.lua`` releases the
hold as ``canceled`` (units back exactly once, whoever races it: the script only
changes a pending purchase). A provider that cannot be reached -> 503 and nothing
changed; a provider that refuses (the session already completed or expired) does not
stop the cancel: a payment that completes after it is refunded by the webhook.

``POST /v1/purchases/{id}/refund``:

1. ``offer_refund_hold-3.lua`` sets the amount aside (default: all that is left), so
   concurrent refunds can never together pass what was paid (409
   ``REFUND_EXCEEDS_PAYMENT``; not paid -> 409 ``PURCHASE_NOT_PAID``);
2. the provider refunds exactly that amount, under an idempotency key derived from
   the request's ``Idempotency-Key`` (one key, one refund at the provider); if it
   fails, the amount is given back and the answer is 503, nothing changed;
3. ``offer_refund-5.lua`` applies the refund by its provider id (once), and with a
   full refund and ``restock`` returns the units.

The route's answer is kept per ``Idempotency-Key`` by ``http/idempotency.py``.
"""

from __future__ import annotations

import logging
import secrets

from dropgate.checkout.payments.base import PaymentProvider, PaymentProviderError, PaymentProviderRefused
from dropgate.engine.idempotency import request_digest
from dropgate.engine.offers import Offers, PurchaseRecord
from dropgate.errors import PaymentProviderUnavailable, PurchaseNotPending

log = logging.getLogger("dropgate.refunds")


class Refunds:
    """Cancels and refunds through the payment provider."""

    def __init__(self, offers: Offers, provider: PaymentProvider, *, hold_stale_ms: int) -> None:
        self._offers = offers
        self.provider = provider
        self._hold_stale_ms = hold_stale_ms

    async def cancel(self, tenant_id: str, purchase_id: str) -> PurchaseRecord:
        p = await self._offers.purchase(tenant_id, purchase_id)
        if p.status != "pending":
            raise PurchaseNotPending(details={"purchase_id": purchase_id, "status": p.status})
        if p.session_id:
            try:
                await self.provider.expire_checkout(p.session_id)
            except PaymentProviderRefused as exc:
                # completed or expired there already: the release below is still right (a
                # payment that completed is refunded when its webhook arrives)
                log.info("cancel of purchase %s (tenant %s): the provider refused to expire "
                         "session %s (%s); releasing the hold", purchase_id, tenant_id, p.session_id, exc)
            except PaymentProviderError as exc:
                log.warning("cancel of purchase %s (tenant %s) failed: the provider could not expire "
                            "session %s; nothing changed; error: %s", purchase_id, tenant_id,
                            p.session_id, exc)
                raise PaymentProviderUnavailable(
                    "The payment provider is unavailable; the purchase was not canceled.",
                    details={"purchase_id": purchase_id}) from None
        out = await self._offers.release(tenant_id, p.offer_id, purchase_id, status="canceled")
        after = await self._offers.purchase(tenant_id, purchase_id)
        if out.outcome != "released":
            raise PurchaseNotPending(details={"purchase_id": purchase_id, "status": after.status})
        return after

    async def refund(self, tenant_id: str, purchase_id: str, *, amount_minor: int | None,
                     restock: bool, idempotency_key: str | None) -> PurchaseRecord:
        p = await self._offers.purchase(tenant_id, purchase_id)
        # one Idempotency-Key, one hold, one refund at the provider (its key is the hold's)
        hold_id = (request_digest(f"refund\n{idempotency_key}")[:32] if idempotency_key
                   else secrets.token_hex(16))
        hold = await self._offers.refund_hold(tenant_id, p.offer_id, purchase_id, hold_id=hold_id,
                                              amount_minor=amount_minor, take=True,
                                              stale_ms=self._hold_stale_ms)
        try:
            refund_id = await self.provider.refund(payment_intent=hold.payment_intent,
                                                   purchase_id=purchase_id, amount_minor=hold.amount,
                                                   key=hold_id)
        except PaymentProviderError as exc:
            await self._offers.refund_hold(tenant_id, p.offer_id, purchase_id, hold_id=hold_id,
                                           amount_minor=None, take=False, stale_ms=self._hold_stale_ms)
            log.warning("refund of purchase %s (tenant %s, %d minor units) failed at the provider; "
                        "nothing changed; error: %s", purchase_id, tenant_id, hold.amount, exc)
            raise PaymentProviderUnavailable(
                "The payment provider is unavailable; nothing was refunded.",
                details={"purchase_id": purchase_id}) from None
        await self._offers.refund(tenant_id, p.offer_id, purchase_id, refund_id=refund_id,
                                  amount_minor=hold.amount, restock=restock, hold_id=hold_id)
        log.info("purchase %s (tenant %s) refunded %d minor units at the provider: refund %s",
                 purchase_id, tenant_id, hold.amount, refund_id)
        return await self._offers.purchase(tenant_id, purchase_id)
