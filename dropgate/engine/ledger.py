"""Subscription-gated operations of a tenant: payments, withdrawals, orders, bookings.

Each is one Lua script that checks, in the same atomic step, the calling actor's
lease (``STALE_EPOCH``) and the tenant's subscription (``SUBSCRIPTION_INACTIVE``,
Redis time decides whether a trial has ended), then validates and writes. The
HTTP layer never calls a write directly: it hands it to the tenant's actor
(``TenantActorSystem.run(tenant_id, ledger.payment, ...)``), which calls it in the
tenant's turn as ``op(tenant_id, epoch, ...)`` with its lease epoch (hence the epoch
is the one positional argument after the tenant).

Script <-> method: ``ledger_payment-3.lua`` <-> ``Ledger.payment``,
``ledger_withdrawal_initiate-4.lua`` <-> ``Ledger.withdrawal_initiate``,
``ledger_withdrawal_approve-4.lua`` <-> ``Ledger.withdrawal_approve``,
``ledger_withdrawal_reject-4.lua`` <-> ``Ledger.withdrawal_reject``,
``ledger_order-4.lua`` <-> ``Ledger.order``, ``ledger_order_status-4.lua`` <->
``Ledger.order_status``, ``ledger_booking-5.lua`` <-> ``Ledger.booking``,
``ledger_booking_cancel-5.lua`` <-> ``Ledger.booking_cancel``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.errors import SubscriptionInactive
from dropgate.ids import ms_to_dt

T = TypeVar("T")
_ts_encoder = msgspec.json.Encoder()


class PaymentResult(msgspec.Struct, kw_only=True):
    payment_id: str
    balance: int
    at_ms: int


class WithdrawalState(msgspec.Struct, kw_only=True):
    tenant_id: str
    withdrawal_id: str
    amount: int
    currency: str
    initiated_by: str
    status: str
    created_ms: int
    version: int
    approved_by: str | None = None
    completed_ms: int | None = None
    balance: int | None = None  # after the debit, in approve's answer
    # the keys behind it: identities ("name:<casefolded>" or "key:<id>") decide four-eyes;
    # '' on withdrawals made before identities were recorded
    initiator: str = ""
    initiator_key_id: str = ""
    approver: str | None = None  # who approved or rejected it
    approver_key_id: str | None = None
    rejected_ms: int | None = None
    reason: str | None = None


class OrderState(msgspec.Struct, kw_only=True):
    tenant_id: str
    order_id: str
    items: str  # JSON array of {sku, quantity}
    total: int
    currency: str
    status: str
    created_ms: int
    version: int
    updated_ms: int | None = None


class BookingState(msgspec.Struct, kw_only=True):
    tenant_id: str
    booking_id: str
    resource_id: str
    slot_start_ms: int
    slot_end_ms: int
    user_id: str
    status: str  # booked | canceled
    created_ms: int
    version: int
    canceled_ms: int | None = None
    capacity: int | None = None  # the slot's, in cancel's answer
    booked: int | None = None


class BookingResult(msgspec.Struct, kw_only=True):
    booking_id: str
    capacity: int
    booked: int
    created_ms: int


def trial_end_date(trial_end_ms: Any) -> str | None:
    """The lib's ``trial_end_ms`` as the RFC 3339 string docs/api.md calls ``trial_end_date``."""
    if trial_end_ms is None:
        return None
    encoded: bytes = _ts_encoder.encode(ms_to_dt(int(trial_end_ms)))
    return encoded.decode().strip('"')


class Ledger:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx

    async def _call(self, name: str, keys: list[str], args: list[Any], type: type[T]) -> T:
        try:
            return await self._ctx.scripts.call(name, keys, args, type=type, durable=True)
        except SubscriptionInactive as exc:
            d = exc.details
            raise SubscriptionInactive(details={
                "subscription_status": d.get("subscription_status"),
                "trial_end_date": trial_end_date(d.get("trial_end_ms")),
            }) from None

    def _head(self, tenant_id: str, epoch: int) -> tuple[list[str], list[Any]]:
        """KEYS[1..3] and ARGV[1..4] every ledger script shares."""
        tk = self._ctx.keys.tenant(tenant_id)
        return ([tk.log, tk.tenant(), tk.actor_lease()],
                [self._ctx.backlog_bound, tenant_id, epoch, self._ctx.settings.actor_lease_ms])

    async def payment(
        self, tenant_id: str, epoch: int, *, payment_id: str, amount: int, currency: str,
        reference: str,
    ) -> PaymentResult:
        keys, args = self._head(tenant_id, epoch)
        return await self._call("ledger_payment", keys,
                                [*args, payment_id, amount, currency, reference], PaymentResult)

    async def withdrawal_initiate(
        self, tenant_id: str, epoch: int, *, withdrawal_id: str, amount: int, currency: str,
        initiated_by: str, initiator: str = "", initiator_key_id: str = "",
    ) -> WithdrawalState:
        """``initiator``: the initiating key's identity (``Principal.identity``), which
        approve and reject compare; ``initiated_by`` is a label."""
        keys, args = self._head(tenant_id, epoch)
        keys.append(self._ctx.keys.tenant(tenant_id).withdrawal(withdrawal_id))
        return await self._call("ledger_withdrawal_initiate", keys,
                                [*args, withdrawal_id, amount, currency, initiated_by, initiator,
                                 initiator_key_id],
                                WithdrawalState)

    async def withdrawal_approve(
        self, tenant_id: str, epoch: int, *, withdrawal_id: str, approved_by: str,
        approver: str = "", approver_key_id: str = "",
    ) -> WithdrawalState:
        keys, args = self._head(tenant_id, epoch)
        keys.append(self._ctx.keys.tenant(tenant_id).withdrawal(withdrawal_id))
        return await self._call("ledger_withdrawal_approve", keys,
                                [*args, withdrawal_id, approved_by, approver, approver_key_id],
                                WithdrawalState)

    async def withdrawal_reject(
        self, tenant_id: str, epoch: int, *, withdrawal_id: str, rejected_by: str,
        approver: str, approver_key_id: str = "", reason: str = "",
    ) -> WithdrawalState:
        keys, args = self._head(tenant_id, epoch)
        keys.append(self._ctx.keys.tenant(tenant_id).withdrawal(withdrawal_id))
        return await self._call("ledger_withdrawal_reject", keys,
                                [*args, withdrawal_id, rejected_by, approver, approver_key_id, reason],
                                WithdrawalState)

    async def order(
        self, tenant_id: str, epoch: int, *, order_id: str, items_json: str, total: int,
        currency: str,
    ) -> OrderState:
        keys, args = self._head(tenant_id, epoch)
        keys.append(self._ctx.keys.tenant(tenant_id).order(order_id))
        return await self._call("ledger_order", keys,
                                [*args, order_id, items_json, total, currency], OrderState)

    async def booking(
        self, tenant_id: str, epoch: int, *, booking_id: str, resource_id: str,
        slot_start_ms: int, slot_end_ms: int, capacity: int | None, user_id: str,
    ) -> BookingResult:
        keys, args = self._head(tenant_id, epoch)
        tk = self._ctx.keys.tenant(tenant_id)
        keys += [tk.booking_slot(resource_id, slot_start_ms, slot_end_ms), tk.booking(booking_id)]
        return await self._call(
            "ledger_booking", keys,
            [*args, booking_id, resource_id, slot_start_ms, slot_end_ms,
             "" if capacity is None else capacity, user_id],
            BookingResult,
        )

    async def order_status(
        self, tenant_id: str, epoch: int, *, order_id: str, status: str,
    ) -> OrderState:
        keys, args = self._head(tenant_id, epoch)
        keys.append(self._ctx.keys.tenant(tenant_id).order(order_id))
        return await self._call("ledger_order_status", keys, [*args, order_id, status], OrderState)

    async def booking_cancel(self, tenant_id: str, epoch: int, *, booking_id: str) -> BookingState:
        """Cancel a booking; its place in the slot is free again (409 CONFLICT if canceled)."""
        # the slot is named by the booking's record: read it first (a booking never moves)
        record = await self.booking_get(tenant_id, booking_id)
        keys, args = self._head(tenant_id, epoch)
        tk = self._ctx.keys.tenant(tenant_id)
        keys += [tk.booking(booking_id),
                 tk.booking_slot(record.resource_id, record.slot_start_ms, record.slot_end_ms)]
        return await self._call("ledger_booking_cancel", keys, [*args, booking_id], BookingState)

    # -- reads (plain commands) ----------------------------------------------------------
    async def slot_counts(self, tenant_id: str, b: BookingState) -> tuple[int, int]:
        """A booking's slot: (capacity, booked)."""
        capacity, booked = await self._ctx.redis.hmget(
            self._ctx.keys.tenant(tenant_id).booking_slot(b.resource_id, b.slot_start_ms, b.slot_end_ms),
            "capacity", "booked")
        return int(capacity or 0), int(booked or 0)

    async def booking_get(self, tenant_id: str, booking_id: str) -> BookingState:
        key = self._ctx.keys.tenant(tenant_id).booking(booking_id)
        return await self._ctx.read_hash(key, BookingState, "No such booking.", {"booking_id": booking_id})

    async def withdrawal(self, tenant_id: str, withdrawal_id: str) -> WithdrawalState:
        key = self._ctx.keys.tenant(tenant_id).withdrawal(withdrawal_id)
        return await self._ctx.read_hash(key, WithdrawalState, "No such withdrawal.", {"withdrawal_id": withdrawal_id})

    async def order_get(self, tenant_id: str, order_id: str) -> OrderState:
        key = self._ctx.keys.tenant(tenant_id).order(order_id)
        return await self._ctx.read_hash(key, OrderState, "No such order.", {"order_id": order_id})
