"""``client.offers``, ``client.purchases`` and ``client.sandbox``: offer inventory and checkout."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec

from dropgate.client.base import Namespace, flag
from dropgate.models.lists import OfferPage, PurchasePage
from dropgate.models.offers import (
    Offer,
    OfferCreate,
    OfferList,
    OfferPatch,
    Purchase,
    PurchaseCreated,
    PurchaseRefund,
    PurchaseRequest,
    SandboxResult,
)

DEFAULT_PAGE = 100  # the server's default limit, sent explicitly


class Offers(Namespace):
    """Offers of an event (``/v1/offers``), each with an inventory that is never oversold.

    ``price`` is a decimal string in the offer's currency (``"49.90"``), never a float.
    """

    async def create(
        self, offer_id: str | None = None, *, idempotency_key: str | None = None, **fields: Any,
    ) -> Offer:
        """Create an offer (``POST /v1/offers``); an ``offer_id`` is generated when none is given.

        ``fields`` are those of ``dropgate.models.offers.OfferCreate`` (``event_id``,
        ``name``, ``price``, ``currency``, ``inventory_total``; the others have defaults).
        Raises ``TypeError`` for a field it does not have, ``ValidationError`` (e.g. a
        price with more decimals than the currency has), ``AlreadyExists`` when the id
        is taken, or ``PersistenceLagging``.
        """
        body = OfferCreate(offer_id=offer_id, **fields)
        return await self._call("POST", "/v1/offers", Offer, body=body,
                                idempotency_key=idempotency_key)

    async def list(self, event_id: str) -> builtins.list[Offer]:
        """The event's active, unarchived, unexpired offers (``GET /v1/offers?event_id=``).

        Raises ``ValidationError`` for a malformed ``event_id``.
        """
        answer = await self._call("GET", "/v1/offers", OfferList, query={"event_id": event_id})
        return answer.offers

    def iterate(
        self,
        *,
        event_id: str | None = None,
        active: bool | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Offer]:
        """Every offer, newest first, by event and ``active`` (``GET /v1/offers``, the list form).

        Unlike ``list`` (the v1 answer: one event's listed offers, live), this walks
        the durable record page after page (``page_size`` items each, default 100),
        archived and expired offers included; ``consistent=True`` first waits until
        PostgreSQL has every change made before the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> OfferPage:
            # always send limit: "?event_id=" alone is the v1 form and answers {offers}
            query["limit"] = query["limit"] or str(DEFAULT_PAGE)
            return await self._call("GET", "/v1/offers", OfferPage, query=query)

        return self._pages(fetch, {"event_id": event_id, "active": flag(active)},
                           page_size=page_size, consistent=consistent)

    async def get(self, offer_id: str) -> Offer:
        """An offer with its ``inventory`` (total, available, reserved, sold) (``GET /v1/offers/{offer_id}``).

        Raises ``NotFound``.
        """
        return await self._call("GET", "/v1/offers/{offer_id}", Offer,
                                path_params={"offer_id": offer_id})

    async def update(
        self,
        offer_id: str,
        *,
        inventory_total: int | None = None,
        active: bool | None = None,
        archived: bool | None = None,
        expires_at: datetime | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> Offer:
        """Change an offer (``PATCH /v1/offers/{offer_id}``); arguments left out stay as they are.

        ``expires_at=None`` removes the expiry. Raises ``NotFound``,
        ``InventoryConflict`` (``inventory_total`` below reserved + sold),
        ``ValidationError`` or ``PersistenceLagging``.
        """
        body = OfferPatch(inventory_total=inventory_total, active=active, archived=archived,
                          expires_at=expires_at)
        return await self._call("PATCH", "/v1/offers/{offer_id}", Offer,
                                path_params={"offer_id": offer_id}, body=body)

    async def purchase(
        self,
        offer_id: str,
        *,
        user_id: str,
        quantity: int = 1,
        idempotency_key: str | None = None,
    ) -> PurchaseCreated:
        """Hold ``quantity`` units for ``user_id`` and open a checkout (``POST /v1/offers/{offer_id}/purchase``).

        Answers the pending purchase with its ``checkout_url``; the hold lasts until
        ``expires_at`` unless the checkout completes. The server replays by
        ``Idempotency-Key`` (24 h, Stripe's semantics), so the client's retries
        after a lost answer get the first answer back, never a second purchase;
        pass your own ``idempotency_key`` to span processes. Raises
        ``InsufficientInventory``, ``OfferUnavailable`` (inactive, archived or
        expired), ``QuantityLimit`` (over the offer's per-order limit), ``SubscriptionInactive``,
        ``RateLimited`` (``retry_after``), ``PaymentProviderUnavailable`` (the hold
        was released), ``IdempotencyKeyReused`` (the key came with another body),
        ``IdempotencyKeyInUse``, ``TenantBusy``, ``NotFound`` or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/offers/{offer_id}/purchase", PurchaseCreated,
                                path_params={"offer_id": offer_id},
                                body=PurchaseRequest(user_id=user_id, quantity=quantity),
                                idempotency_key=idempotency_key)


class Purchases(Namespace):
    """Purchases of offers (``/v1/purchases``)."""

    async def get(self, purchase_id: str) -> Purchase:
        """A purchase and its ``status`` (``GET /v1/purchases/{purchase_id}``).

        ``pending``, ``paid``, ``released``, ``expired``, ``refunded``, ``canceled``,
        ``partially_refunded``, ``disputed`` or ``failed``. Raises ``NotFound``.
        """
        return await self._call("GET", "/v1/purchases/{purchase_id}", Purchase,
                                path_params={"purchase_id": purchase_id})

    def list(
        self,
        *,
        offer_id: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Purchase]:
        """Purchases, newest first: an offer's, a user's, by status (``GET /v1/purchases``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> PurchasePage:
            return await self._call("GET", "/v1/purchases", PurchasePage, query=query)

        return self._pages(fetch, {"offer_id": offer_id, "user_id": user_id, "status": status},
                           page_size=page_size, consistent=consistent)

    async def cancel(self, purchase_id: str) -> Purchase:
        """Cancel a pending purchase (``POST /v1/purchases/{purchase_id}/cancel``).

        Its checkout session is expired at the provider and its hold released
        (``status`` ``canceled``); a payment that still completes is refunded. Raises
        ``PurchaseNotPending``, ``NotFound`` or ``PaymentProviderUnavailable``
        (nothing changed).
        """
        return await self._call("POST", "/v1/purchases/{purchase_id}/cancel", Purchase,
                                path_params={"purchase_id": purchase_id})

    async def refund(self, purchase_id: str, *, amount: str | None = None, restock: bool = True,
                     idempotency_key: str | None = None) -> Purchase:
        """Refund a paid purchase through the provider (``POST /v1/purchases/{purchase_id}/refund``).

        ``amount`` (a decimal string in the purchase's currency) defaults to all that
        is left of the payment; a full refund with ``restock`` returns the units. The
        server keeps the answer per ``Idempotency-Key``, so a retry never refunds
        twice. Raises ``PurchaseNotPaid``, ``RefundExceedsPayment``, ``NotFound`` or
        ``PaymentProviderUnavailable`` (nothing refunded).
        """
        return await self._call("POST", "/v1/purchases/{purchase_id}/refund", Purchase,
                                path_params={"purchase_id": purchase_id},
                                body=PurchaseRefund(amount=amount, restock=restock),
                                idempotency_key=idempotency_key)


class Sandbox(Namespace):
    """The sandbox payment provider's checkout (DROPGATE_PAYMENT_PROVIDER=sandbox): pay or cancel from code.

    ``checkout_session_id`` of a purchase names the session. The checkout page itself
    (``checkout_url``) is HTML for a browser and has no method here.
    """

    async def complete(self, session_id: str, *, idempotency_key: str | None = None) -> SandboxResult:
        """Pay a sandbox checkout (``POST /v1/sandbox/checkout/{session_id}/complete``).

        The server sends itself a signed ``checkout.session.completed`` webhook and
        answers its status and body. Raises ``NotFound`` (no such session, or the
        server uses Stripe).
        """
        return await self._call("POST", "/v1/sandbox/checkout/{session_id}/complete", SandboxResult,
                                path_params={"session_id": session_id},
                                idempotency_key=idempotency_key)

    async def expire(self, session_id: str, *, idempotency_key: str | None = None) -> SandboxResult:
        """Abandon a sandbox checkout (``POST /v1/sandbox/checkout/{session_id}/expire``).

        The server sends itself a signed ``checkout.session.expired`` webhook (the
        hold is released). Raises ``NotFound``.
        """
        return await self._call("POST", "/v1/sandbox/checkout/{session_id}/expire", SandboxResult,
                                path_params={"session_id": session_id},
                                idempotency_key=idempotency_key)
