"""``client.payments``, ``client.withdrawals``, ``client.orders``, ``client.bookings``.

The subscription-gated operations: each runs in the tenant's actor, in order, and
is refused with ``SubscriptionInactive`` once the tenant's subscription is no
longer active or trialing. Amounts are decimal strings (``"12.50"``), never floats.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from datetime import datetime

from dropgate.client.base import Namespace
from dropgate.models.ledger import (
    Booking,
    BookingCreate,
    Order,
    OrderCreate,
    OrderItem,
    OrderStatus,
    OrderUpdate,
    Payment,
    PaymentCreate,
    Withdrawal,
    WithdrawalApprove,
    WithdrawalCreate,
    WithdrawalReject,
)
from dropgate.models.lists import BookingPage, OrderPage, PaymentItem, PaymentPage, WithdrawalPage


class Payments(Namespace):
    """Payments into the tenant's balance (``/v1/payments``)."""

    async def create(
        self,
        amount: str,
        *,
        currency: str,
        reference: str,
        idempotency_key: str | None = None,
    ) -> Payment:
        """Record a payment of ``amount`` (``POST /v1/payments``); answers the new ``balance``.

        Raises ``SubscriptionInactive``, ``TenantBusy``, ``StaleEpoch``, ``Conflict`` (the
        balance would pass its limit), ``ValidationError`` or ``PersistenceLagging``. Payments are not replayed by
        key on the server: after a ``ConnectionFailed`` or ``Timeout`` check the
        balance before paying again.
        """
        return await self._call("POST", "/v1/payments", Payment,
                                body=PaymentCreate(amount=amount, currency=currency,
                                                   reference=reference),
                                idempotency_key=idempotency_key)

    def list(
        self,
        *,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[PaymentItem]:
        """Payments, newest first (``GET /v1/payments``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> PaymentPage:
            return await self._call("GET", "/v1/payments", PaymentPage, query=query)

        return self._pages(fetch, {},
                           page_size=page_size, consistent=consistent)


class Withdrawals(Namespace):
    """Four-eyes withdrawals from the tenant's balance (``/v1/withdrawals``)."""

    async def create(
        self,
        amount: str,
        *,
        currency: str,
        initiated_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> Withdrawal:
        """Initiate a withdrawal (``POST /v1/withdrawals``); it stays ``pending`` until approved.

        The withdrawal records this client's key; ``initiated_by`` is a label only
        (default: the key's name).

        Raises ``SubscriptionInactive``, ``TenantBusy``, ``StaleEpoch``,
        ``AlreadyExists``, ``ValidationError`` or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/withdrawals", Withdrawal,
                                body=WithdrawalCreate(amount=amount, currency=currency,
                                                      initiated_by=initiated_by),
                                idempotency_key=idempotency_key)

    async def approve(
        self,
        withdrawal_id: str,
        *,
        approved_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> Withdrawal:
        """Approve and debit (``POST /v1/withdrawals/{withdrawal_id}/approve``); never overdraws.

        This client's key must have another name than the initiating key's (compared
        case-insensitively; ``approved_by`` is a label only). Raises ``FourEyesRequired``,
        ``InsufficientFunds``, ``Conflict`` (not pending any more), ``NotFound``,
        ``SubscriptionInactive``, ``TenantBusy``, ``StaleEpoch``, ``ValidationError``
        or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/withdrawals/{withdrawal_id}/approve", Withdrawal,
                                path_params={"withdrawal_id": withdrawal_id},
                                body=WithdrawalApprove(approved_by=approved_by),
                                idempotency_key=idempotency_key)

    async def reject(self, withdrawal_id: str, *, reason: str | None = None) -> Withdrawal:
        """Reject a pending withdrawal (``POST /v1/withdrawals/{withdrawal_id}/reject``): no
        money moves. Gated like ``approve`` (another key's name). Raises ``FourEyesRequired``,
        ``Conflict`` (not pending any more), ``NotFound``, ``SubscriptionInactive``,
        ``TenantBusy``, ``StaleEpoch``, ``ValidationError`` or ``PersistenceLagging``."""
        return await self._call("POST", "/v1/withdrawals/{withdrawal_id}/reject", Withdrawal,
                                path_params={"withdrawal_id": withdrawal_id},
                                body=WithdrawalReject(reason=reason))

    async def get(self, withdrawal_id: str) -> Withdrawal:
        """A withdrawal and its status (``GET /v1/withdrawals/{withdrawal_id}``). Raises ``NotFound``."""
        return await self._call("GET", "/v1/withdrawals/{withdrawal_id}", Withdrawal,
                                path_params={"withdrawal_id": withdrawal_id})

    def list(
        self,
        *,
        status: str | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Withdrawal]:
        """Withdrawals, newest first (``GET /v1/withdrawals``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> WithdrawalPage:
            return await self._call("GET", "/v1/withdrawals", WithdrawalPage, query=query)

        return self._pages(fetch, {"status": status},
                           page_size=page_size, consistent=consistent)


class Orders(Namespace):
    """Orders (``/v1/orders``)."""

    async def create(
        self,
        order_id: str | None = None,
        *,
        items: builtins.list[OrderItem],
        total: str,
        currency: str,
        idempotency_key: str | None = None,
    ) -> Order:
        """Record an order of ``items`` (``OrderItem(sku=..., quantity=...)``) (``POST /v1/orders``).

        An ``order_id`` is generated when none is given; giving one makes a retry
        safe (the repeat raises ``AlreadyExists``). Raises ``AlreadyExists``,
        ``SubscriptionInactive``, ``TenantBusy``, ``StaleEpoch``, ``ValidationError``
        or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/orders", Order,
                                body=OrderCreate(order_id=order_id, items=items, total=total,
                                                 currency=currency),
                                idempotency_key=idempotency_key)

    async def get(self, order_id: str) -> Order:
        """An order (``GET /v1/orders/{order_id}``). Raises ``NotFound``."""
        return await self._call("GET", "/v1/orders/{order_id}", Order,
                                path_params={"order_id": order_id})

    async def update(self, order_id: str, *, status: OrderStatus) -> Order:
        """Change an order's status (``PATCH /v1/orders/{order_id}``), gated like its
        creation. A ``canceled`` or ``delivered`` order is final (``Conflict``). Raises
        ``NotFound``, ``SubscriptionInactive``, ``TenantBusy``, ``StaleEpoch``,
        ``ValidationError`` or ``PersistenceLagging``."""
        return await self._call("PATCH", "/v1/orders/{order_id}", Order,
                                path_params={"order_id": order_id}, body=OrderUpdate(status=status))

    def list(
        self,
        *,
        status: str | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Order]:
        """Orders, newest first (``GET /v1/orders``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> OrderPage:
            return await self._call("GET", "/v1/orders", OrderPage, query=query)

        return self._pages(fetch, {"status": status},
                           page_size=page_size, consistent=consistent)


class Bookings(Namespace):
    """Bookings of places in a resource's time slots (``/v1/bookings``)."""

    async def create(
        self,
        resource_id: str,
        *,
        slot_start: datetime,
        slot_end: datetime,
        user_id: str,
        capacity: int | None = None,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Book one place in the slot for ``user_id`` (``POST /v1/bookings``).

        The first booking of a slot sets its ``capacity`` (default 1); a later one may
        repeat it or leave it out. The slot's capacity is never exceeded. Raises ``SlotFull``, ``Conflict`` (a capacity
        other than the slot's), ``SubscriptionInactive``, ``TenantBusy``,
        ``StaleEpoch``, ``ValidationError`` or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/bookings", Booking,
                                body=BookingCreate(resource_id=resource_id, slot_start=slot_start,
                                                   slot_end=slot_end, capacity=capacity,
                                                   user_id=user_id),
                                idempotency_key=idempotency_key)

    async def get(self, booking_id: str) -> Booking:
        """A booking, with its slot's capacity and booked count now
        (``GET /v1/bookings/{booking_id}``). Raises ``NotFound``."""
        return await self._call("GET", "/v1/bookings/{booking_id}", Booking,
                                path_params={"booking_id": booking_id})

    async def cancel(self, booking_id: str) -> Booking:
        """Cancel a booking (``POST /v1/bookings/{booking_id}/cancel``), gated like booking:
        its place is free again. Raises ``Conflict`` (canceled before), ``NotFound``,
        ``SubscriptionInactive``, ``TenantBusy``, ``StaleEpoch`` or ``PersistenceLagging``."""
        return await self._call("POST", "/v1/bookings/{booking_id}/cancel", Booking,
                                path_params={"booking_id": booking_id})

    def list(
        self,
        *,
        resource_id: str | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Booking]:
        """Bookings, newest first (``GET /v1/bookings``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> BookingPage:
            return await self._call("GET", "/v1/bookings", BookingPage, query=query)

        return self._pages(fetch, {"resource_id": resource_id},
                           page_size=page_size, consistent=consistent)
