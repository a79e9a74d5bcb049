"""The purchase flow and the payment webhooks around the offer scripts.

``POST /v1/offers/{id}/purchase`` runs, in this order:

1. the tenant's concurrency cap (in-flight purchases of this process, 429);
2. in ONE script call shared with every concurrent request for the same offer
   (``engine/actors/batcher.py`` coalesces them, up to ``purchase_batch_size``):
   the idempotency key (Stripe's semantics: replay, 422 for another body, 409 while
   running; none of these spends a rate-limit token), then for new work the user's
   rate limit (the shared GCRA, 429 with Retry-After), and the hold itself
   (``offer_purchase_batch-11.lua``);
3. the payment provider's checkout session, ``expires_at`` = the hold's expiry,
   the purchase id in its metadata. If the provider fails or times out, the hold
   is released (``offer_release-8.lua``) and the answer is 503
   ``PAYMENT_PROVIDER_UNAVAILABLE``, logged with offer, tenant, user, quantity, error;
4. the response is sent, and the checkout session attached to the purchase record
   with the offer's next batch (same queue, ahead of the new requests, same script
   call; nobody waits for it). The 201 is not stored: it is a function of the record
   (id, session, URL, hold expiry), so a repeat of the key renders the same bytes from
   the record once the session is there. A repeat meanwhile is told the first is
   still running (409); a repeat after a crash lost the session recovers the same
   answer from the provider. Refusals and provider failures are stored under the key
   before they are sent.

The provider's webhooks are ``checkout/webhooks.py``; the sandbox's pages
``checkout/pages.py``. The engine below answers domain results (``HoldResult``,
``Outcome``); the response bytes are built here, above it.
"""

from __future__ import annotations

import functools
import logging
import math
from datetime import datetime

import msgspec

from dropgate.checkout.payments.base import CheckoutRequest, PaymentProvider
from dropgate.checkout.redirects import Redirects, public_base, resolve_redirects
from dropgate.engine.actors.batcher import Batcher
from dropgate.engine.context import EngineContext
from dropgate.engine.idempotency import key_digest, record_times, request_digest
from dropgate.engine.offers import FinishItem, HoldRequest, HoldResult, Offers, new_purchase_id
from dropgate.errors import (
    DropgateError,
    PaymentProviderUnavailable,
    RateLimited,
    error_for,
)
from dropgate.ids import check_id, ms_to_dt
from dropgate.models.common import error_body
from dropgate.models.offers import PurchaseCreated

log = logging.getLogger("dropgate.purchases")
_encoder = msgspec.json.Encoder()
_IN_FLIGHT = 4  # batches per offer under way at once


class PurchaseAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What the client sees: status and the exact body bytes (replays send the same)."""

    status: int
    body: bytes
    replayed: bool = False


def _checkout(tenant_id: str, offer_id: str, user_id: str, purchase_id: str, quantity: int,
              held: HoldResult, redirects: Redirects) -> CheckoutRequest:
    """A hold's checkout, built alike for the purchase and for its recovery (the
    provider's idempotency key replays only an identical request)."""
    return CheckoutRequest(
        purchase_id=purchase_id, tenant_id=tenant_id, offer_id=offer_id, user_id=user_id,
        quantity=quantity, unit_amount_minor=held.price_minor, currency=held.currency,
        name=held.name, expires_at_s=math.ceil(held.expires_ms / 1000),
        success_url=redirects.success_url, cancel_url=redirects.cancel_url)


@functools.lru_cache(maxsize=16)
def _expires_at(expires_ms: int) -> datetime:
    """A hold's expiry as the datetime of its 201 body: one script call gives every hold
    of its batch the same expiry, so a crowd's requests mostly find it made."""
    expires_at = ms_to_dt(expires_ms)
    assert expires_at is not None
    return expires_at


def _created(purchase_id: str, session_id: str, checkout_url: str, expires_ms: int) -> bytes:
    """The 201 body: a pure function of the purchase record (its id, checkout session and
    hold expiry), so a repeat of its key renders the same bytes and nothing stores them."""
    expires_at = _expires_at(expires_ms)
    return _encoder.encode(PurchaseCreated(
        purchase_id=purchase_id, status="pending", checkout_session_id=session_id,
        checkout_url=checkout_url, expires_at=expires_at))


class Purchases:
    """The purchase flow of every offer of this process (one Batcher queue per offer)."""

    def __init__(self, ctx: EngineContext, offers: Offers, provider: PaymentProvider) -> None:
        s = ctx.settings
        if s.rate_limit_per_s <= 0 or s.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_s must be > 0 and rate_limit_burst >= 1")
        self._ctx = ctx
        self._offers = offers
        self.provider = provider
        self._rate_interval_ms = 1000.0 / s.rate_limit_per_s
        self._idem_ttl_ms, self._idem_stale_ms = record_times(ctx)
        self._inflight: dict[str, int] = {}
        # one queue per (tenant, offer) for both steps of a purchase: the hold and, once
        # the provider answered, its session attached or its refusal stored (queued
        # first: it completes a request already holding units)
        self.batches: Batcher[tuple[str, str], HoldRequest | FinishItem, HoldResult | None] = Batcher(
            self._flush, max_batch=s.purchase_batch_size, max_in_flight=_IN_FLIGHT, name="offer_purchases",
            queued="purchases of this offer")
        self._hold_ttl_ms = s.hold_ttl_s * 1000
        self._public_base = public_base(s)

    # -- batching ----------------------------------------------------------------------
    async def _flush(self, key: tuple[str, str], items: list[HoldRequest | FinishItem]
                     ) -> list[HoldResult | None]:
        holds = [it for it in items if type(it) is HoldRequest]
        finishes = [it for it in items if type(it) is FinishItem]
        held = iter(await self._offers.purchase_batch(
            key[0], key[1], holds, finishes, hold_ttl_ms=self._hold_ttl_ms,
            rate_interval_ms=self._rate_interval_ms, rate_burst=self._ctx.settings.rate_limit_burst,
            idem_ttl_ms=self._idem_ttl_ms, idem_stale_ms=self._idem_stale_ms))
        return [next(held) if type(it) is HoldRequest else None for it in items]

    async def close(self) -> None:
        await self.batches.close()

    # -- the purchase ------------------------------------------------------------------
    async def purchase(self, tenant_id: str, offer_id: str, *, user_id: str, quantity: int,
                       idempotency_key: str | None) -> PurchaseAnswer:
        """Hold, open a checkout, answer; ``offer_id`` is checked by keys.py with its key."""
        check_id(user_id, "user_id")
        digest = key_digest(idempotency_key)
        inflight = self._inflight.get(tenant_id, 0)
        if inflight >= self._ctx.settings.tenant_concurrency:
            raise RateLimited("Too many purchases in flight for this tenant; retry shortly.",
                              details={"retry_after_s": 1, "scope": "tenant_concurrency"})
        self._inflight[tenant_id] = inflight + 1
        # one coroutine with the purchase itself, not a wrapper awaiting it: a crowd's
        # request suspends and resumes through every coroutine it awaits in (BENCHMARKS.md,
        # "Reading a body resumes nothing")
        try:
            fingerprint = request_digest(f"purchase\n{offer_id}\n{user_id}\n{quantity}") if digest else ""
            purchase_id = new_purchase_id()
            request = HoldRequest(purchase_id=purchase_id, user_id=user_id, quantity=quantity,
                                  idem_digest=digest, fingerprint=fingerprint)
            held = await self.batches.enqueue((tenant_id, offer_id), request)  # full: 503 TENANT_BUSY
            assert held is not None
            if held.replay:
                body = (_created(held.purchase_id, held.session_id, held.checkout_url, held.expires_ms)
                        if held.session_id else held.body.encode())
                return PurchaseAnswer(status=held.status, body=body, replayed=True)
            if held.err:
                exc = self._hold_error(held)
                if not held.idem:
                    raise exc
                return await self._finish(tenant_id, offer_id, FinishItem(
                    idem_digest=digest, status=exc.status, body=error_body(exc)))
            if held.recover:
                return await self._recover(tenant_id, offer_id, user_id, held)
            checkout = _checkout(tenant_id, offer_id, user_id, purchase_id, quantity, held,
                                 self.redirects(tenant_id, purchase_id, success_url=held.success_url,
                                                cancel_url=held.cancel_url))
            try:
                session = await self.provider.create_checkout(checkout)
            except BaseException as exc:
                released = await self._release_after_failure(tenant_id, offer_id, purchase_id, user_id,
                                                             quantity, exc)
                if not isinstance(exc, Exception):
                    raise
                if released:
                    failure = PaymentProviderUnavailable(details={"offer_id": offer_id})
                else:  # truthful: the units stay held until the hold expires (nothing is charged)
                    expires_at = ms_to_dt(held.expires_ms)
                    failure = PaymentProviderUnavailable(
                        "The payment provider failed and the hold could not be released now; nothing "
                        "was charged, and its units stay held until it expires.",
                        details={"offer_id": offer_id, "purchase_id": purchase_id, "hold_released": False,
                                 "hold_expires_at": expires_at.isoformat() if expires_at else None})
                if not digest:
                    raise failure from None
                return await self._finish(tenant_id, offer_id, FinishItem(
                    purchase_id=purchase_id, idem_digest=digest, status=failure.status,
                    body=error_body(failure)))
            body = _created(purchase_id, session.session_id, session.url, held.expires_ms)
            # The session is attached after the 201 is sent, riding with the offer's next
            # batch with nobody waiting (a second wait resumed the whole request a second
            # time). Until it lands a repeat of the key is told the first is still running
            # (409); if it never lands (a crash), a repeat recovers this same answer
            # (``_recover``). The key's record needs no write: the session answers it.
            self.batches.post((tenant_id, offer_id), FinishItem(
                purchase_id=purchase_id, session_id=session.session_id, checkout_url=session.url))
            return PurchaseAnswer(status=201, body=body)
        finally:
            left = self._inflight[tenant_id] - 1
            if left:
                self._inflight[tenant_id] = left
            else:
                del self._inflight[tenant_id]

    async def _recover(self, tenant_id: str, offer_id: str, user_id: str,
                       held: HoldResult) -> PurchaseAnswer:
        """The first request with this key took a hold, then stopped answering before its
        session was attached: its 201 may have reached the client. Ask the provider
        for the hold's checkout again, the same request under the same provider
        idempotency key, which gives the same session and so the same body."""
        checkout = _checkout(tenant_id, offer_id, user_id, held.purchase_id, held.quantity, held,
                             self.redirects(tenant_id, held.purchase_id, success_url=held.success_url,
                                            cancel_url=held.cancel_url))
        try:
            session = await self.provider.create_checkout(checkout)
        except Exception as exc:  # nothing stored: a later repeat recovers again
            log.warning("payment provider %s failed while recovering the answer of purchase %s "
                        "(offer=%s tenant=%s user=%s); error: %s", self.provider.name,
                        held.purchase_id, offer_id, tenant_id, user_id, exc if str(exc) else repr(exc))
            raise PaymentProviderUnavailable(details={"offer_id": offer_id}) from None
        body = _created(held.purchase_id, session.session_id, session.url, held.expires_ms)
        await self._finish(tenant_id, offer_id, FinishItem(
            purchase_id=held.purchase_id, session_id=session.session_id, checkout_url=session.url))
        return PurchaseAnswer(status=201, body=body, replayed=True)

    def redirects(self, tenant_id: str, purchase_id: str, *, success_url: str = "",
                  cancel_url: str = "") -> Redirects:
        """The purchase's success/cancel URLs, for the provider's session and the sandbox's
        Pay / Cancel alike: ``success_url`` / ``cancel_url`` are the offer's, else the
        tenant's (the purchase script reads them with the hold; ``Offers.checkout_urls``
        for the sandbox), else dropgate's own pages."""
        return resolve_redirects(self._public_base, tenant_id=tenant_id, purchase_id=purchase_id,
                                 offer_success_url=success_url or None, offer_cancel_url=cancel_url or None)

    async def _finish(self, tenant_id: str, offer_id: str, item: FinishItem) -> PurchaseAnswer:
        """Store the final response (or attach the checkout session that answers the key)
        before the client sees it."""
        await self.batches.enqueue((tenant_id, offer_id), item, first=True)
        return PurchaseAnswer(status=item.status, body=item.body)

    @staticmethod
    def _hold_error(held: HoldResult) -> DropgateError:
        details = dict(held.details)
        if held.err == "RATE_LIMITED":
            retry_after_s = max(1, math.ceil(int(details.pop("retry_after_ms", 1000)) / 1000))
            details["retry_after_s"] = retry_after_s
            return RateLimited(f"Too many purchases by this user; retry in {retry_after_s}s.",
                               details=details)
        return error_for(held.err, details=details or None)

    async def _release_after_failure(self, tenant_id: str, offer_id: str, purchase_id: str,
                                     user_id: str, quantity: int, exc: BaseException) -> bool:
        """Release the hold of a purchase whose checkout failed; whether it was."""
        released = "released"
        try:
            await self._offers.release(tenant_id, offer_id, purchase_id, status="released")
        except Exception as release_exc:  # Redis gone too: the hold still expires by its TTL
            released = f"NOT released ({release_exc!r}; it expires by its TTL)"
        log.warning(
            "payment provider %s failed: offer=%s tenant=%s user=%s quantity=%d purchase=%s "
            "hold %s; error: %s", self.provider.name, offer_id, tenant_id, user_id, quantity,
            purchase_id, released, exc if str(exc) else repr(exc))
        return released == "released"
