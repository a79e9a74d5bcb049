"""Subscription-gated operations (tenant): each runs in the tenant's actor, in order.

A write hands its ledger script wrapper to ``runtime.actors.run``: the actor calls it
in the tenant's turn with its lease epoch. Ids are drawn here, before the turn."""

from __future__ import annotations

from typing import Any

import msgspec

from dropgate.engine.apikeys import Principal
from dropgate.engine.ledger import BookingState, OrderState, WithdrawalState
from dropgate.errors import (
    AlreadyExists,
    Conflict,
    FourEyesRequired,
    InsufficientFunds,
    NotFound,
    SlotFull,
    StaleEpoch,
    SubscriptionInactive,
    TenantBusy,
    ValidationError,
)
from dropgate.http.routing import ApiRoutes, Call
from dropgate.ids import dt_to_ms, ms_to_dt, new_id
from dropgate.models.ledger import (
    Booking,
    BookingCreate,
    Order,
    OrderCreate,
    OrderItem,
    OrderUpdate,
    Payment,
    PaymentCreate,
    Withdrawal,
    WithdrawalApprove,
    WithdrawalCreate,
    WithdrawalReject,
)
from dropgate.money import format_amount, parse_amount

routes = ApiRoutes("tenant operations")

# Every gated route can answer these on top of its own.
_GATED = (SubscriptionInactive, TenantBusy, StaleEpoch)
_items_decoder = msgspec.json.Decoder(list[OrderItem])
_items_encoder = msgspec.json.Encoder()
_ID_BYTES = 16  # generated ids: a prefix and 32 hex characters


def withdrawal_view(w: WithdrawalState) -> Withdrawal:
    return Withdrawal(
        withdrawal_id=w.withdrawal_id, status=w.status,  # type: ignore[arg-type]
        amount=format_amount(w.amount, w.currency), currency=w.currency,
        initiated_by=w.initiated_by, created_at=ms_to_dt(w.created_ms),  # type: ignore[arg-type]
        approved_by=w.approved_by, completed_at=ms_to_dt(w.completed_ms),
        balance=None if w.balance is None else format_amount(w.balance, w.currency),
        initiated_by_key=w.initiator_key_id or None, approved_by_key=w.approver_key_id or None,
        rejected_at=ms_to_dt(w.rejected_ms), reason=w.reason or None,
    )


def _label(given: str | None, principal: Principal | None) -> str:
    """The label stored beside the identity: the body's, else the key's name (or id)."""
    if given is not None:
        return given
    assert principal is not None
    return principal.name or principal.key_id or "admin"


def _who(call: Call[Any]) -> tuple[str, str]:
    """The calling key's identity (four-eyes compares it) and id: never the body's word."""
    assert call.principal is not None
    return call.principal.identity, call.principal.key_id or ""


@routes.post("/v1/payments", body=PaymentCreate, response=Payment, status=201,
             errors=[*_GATED, Conflict])
async def create_payment(call: Call[PaymentCreate]) -> Payment:
    """A payment into the tenant's balance (refused while the subscription is inactive)."""
    b = call.body
    amount = parse_amount(b.amount, b.currency)
    rt = call.runtime
    r = await rt.actors.run(call.tenant_id, rt.ledger.payment, payment_id=new_id("pay_", _ID_BYTES),
                            amount=amount, currency=b.currency, reference=b.reference)
    created = ms_to_dt(r.at_ms)
    assert created is not None
    return Payment(payment_id=r.payment_id, amount=format_amount(amount, b.currency),
                   currency=b.currency, reference=b.reference,
                   balance=format_amount(r.balance, b.currency), created_at=created)


@routes.post("/v1/withdrawals", body=WithdrawalCreate, response=Withdrawal, status=201,
             errors=[*_GATED, AlreadyExists])
async def create_withdrawal(call: Call[WithdrawalCreate]) -> Withdrawal:
    """Initiate a withdrawal; it stays pending until someone else approves it."""
    b = call.body
    rt = call.runtime
    initiator, key_id = _who(call)
    w = await rt.actors.run(
        call.tenant_id, rt.ledger.withdrawal_initiate, withdrawal_id=new_id("wd_", _ID_BYTES),
        amount=parse_amount(b.amount, b.currency), currency=b.currency,
        initiated_by=_label(b.initiated_by, call.principal), initiator=initiator,
        initiator_key_id=key_id)
    return withdrawal_view(w)


@routes.post("/v1/withdrawals/{withdrawal_id}/approve", body=WithdrawalApprove, response=Withdrawal,
             errors=[*_GATED, NotFound, Conflict, FourEyesRequired, InsufficientFunds],
             scope="withdrawals:approve")
async def approve_withdrawal(call: Call[WithdrawalApprove]) -> Withdrawal:
    """Approve and debit; never overdraws. The approving key's name must differ from the
    initiating key's (case-insensitively), whatever the body says: 409 FOUR_EYES_REQUIRED."""
    rt = call.runtime
    approver, key_id = _who(call)
    w = await rt.actors.run(call.tenant_id, rt.ledger.withdrawal_approve,
                            withdrawal_id=call.path_id("withdrawal_id"),
                            approved_by=_label(call.body.approved_by, call.principal),
                            approver=approver, approver_key_id=key_id)
    return withdrawal_view(w)


@routes.post("/v1/withdrawals/{withdrawal_id}/reject", body=WithdrawalReject, response=Withdrawal,
             errors=[*_GATED, NotFound, Conflict, FourEyesRequired], scope="withdrawals:approve")
async def reject_withdrawal(call: Call[WithdrawalReject]) -> Withdrawal:
    """Reject a pending withdrawal (gated like approve: another key's name); no money moves."""
    rt = call.runtime
    approver, key_id = _who(call)
    w = await rt.actors.run(call.tenant_id, rt.ledger.withdrawal_reject,
                            withdrawal_id=call.path_id("withdrawal_id"),
                            rejected_by=_label(None, call.principal), approver=approver,
                            approver_key_id=key_id, reason=call.body.reason or "")
    return withdrawal_view(w)


@routes.get("/v1/withdrawals/{withdrawal_id}", response=Withdrawal, errors=[NotFound])
async def get_withdrawal(call: Call[None]) -> Withdrawal:
    """A withdrawal and its status."""
    return withdrawal_view(await call.runtime.ledger.withdrawal(
        call.tenant_id, call.path_id("withdrawal_id")))


@routes.post("/v1/orders", body=OrderCreate, response=Order, status=201,
             errors=[*_GATED, AlreadyExists])
async def create_order(call: Call[OrderCreate]) -> Order:
    """Record an order (an order_id already used -> 409 ALREADY_EXISTS)."""
    b = call.body
    total = parse_amount(b.total, b.currency, field="total", positive=False)
    rt = call.runtime
    o = await rt.actors.run(
        call.tenant_id, rt.ledger.order, order_id=b.order_id or new_id("ord_", _ID_BYTES),
        items_json=_items_encoder.encode(b.items).decode(), total=total, currency=b.currency)
    created = ms_to_dt(o.created_ms)
    assert created is not None
    return Order(order_id=o.order_id, items=b.items, total=format_amount(o.total, o.currency),
                 currency=o.currency, status=o.status, created_at=created)


def order_view(o: OrderState) -> Order:
    created = ms_to_dt(o.created_ms)
    assert created is not None
    return Order(order_id=o.order_id, items=_items_decoder.decode(o.items),
                 total=format_amount(o.total, o.currency), currency=o.currency, status=o.status,
                 created_at=created, updated_at=ms_to_dt(o.updated_ms))


@routes.get("/v1/orders/{order_id}", response=Order, errors=[NotFound])
async def get_order(call: Call[None]) -> Order:
    """An order."""
    return order_view(await call.runtime.ledger.order_get(call.tenant_id, call.path_id("order_id")))


@routes.patch("/v1/orders/{order_id}", body=OrderUpdate, response=Order,
              errors=[*_GATED, NotFound, Conflict])
async def update_order(call: Call[OrderUpdate]) -> Order:
    """Change an order's status, gated like its creation (a canceled or delivered order
    is final: 409 CONFLICT)."""
    rt = call.runtime
    if call.body.status is None:
        return order_view(await rt.ledger.order_get(call.tenant_id, call.path_id("order_id")))
    o = await rt.actors.run(call.tenant_id, rt.ledger.order_status,
                            order_id=call.path_id("order_id"), status=call.body.status)
    return order_view(o)


@routes.post("/v1/bookings", body=BookingCreate, response=Booking, status=201,
             errors=[*_GATED, SlotFull, Conflict])
async def create_booking(call: Call[BookingCreate]) -> Booking:
    """Book a place in a resource's slot; the slot's capacity is never exceeded."""
    b = call.body
    start_ms, end_ms = dt_to_ms(b.slot_start, "slot_start"), dt_to_ms(b.slot_end, "slot_end")
    assert start_ms is not None and end_ms is not None
    if end_ms <= start_ms:
        raise ValidationError("slot_end must be after slot_start.", details={"field": "slot_end"})
    rt = call.runtime
    r = await rt.actors.run(
        call.tenant_id, rt.ledger.booking, booking_id=new_id("bk_", _ID_BYTES),
        resource_id=b.resource_id, slot_start_ms=start_ms, slot_end_ms=end_ms,
        capacity=b.capacity, user_id=b.user_id)
    created = ms_to_dt(r.created_ms)
    assert created is not None
    return Booking(booking_id=r.booking_id, resource_id=b.resource_id, slot_start=b.slot_start,
                   slot_end=b.slot_end, user_id=b.user_id, capacity=r.capacity, booked=r.booked,
                   created_at=created)


def booking_view(b: BookingState, capacity: int, booked: int) -> Booking:
    start, end, created = ms_to_dt(b.slot_start_ms), ms_to_dt(b.slot_end_ms), ms_to_dt(b.created_ms)
    assert start is not None and end is not None and created is not None
    return Booking(booking_id=b.booking_id, resource_id=b.resource_id, slot_start=start, slot_end=end,
                   user_id=b.user_id, capacity=capacity, booked=booked, created_at=created,
                   status=b.status, canceled_at=ms_to_dt(b.canceled_ms))  # type: ignore[arg-type]


@routes.get("/v1/bookings/{booking_id}", response=Booking, errors=[NotFound])
async def get_booking(call: Call[None]) -> Booking:
    """A booking, with its slot's capacity and booked count."""
    ledger = call.runtime.ledger
    b = await ledger.booking_get(call.tenant_id, call.path_id("booking_id"))
    return booking_view(b, *await ledger.slot_counts(call.tenant_id, b))


@routes.post("/v1/bookings/{booking_id}/cancel", response=Booking, errors=[*_GATED, NotFound, Conflict])
async def cancel_booking(call: Call[None]) -> Booking:
    """Cancel a booking, gated like booking: its place in the slot is free again
    (twice -> 409 CONFLICT)."""
    rt = call.runtime
    b = await rt.actors.run(call.tenant_id, rt.ledger.booking_cancel, booking_id=call.path_id("booking_id"))
    assert b.capacity is not None and b.booked is not None
    return booking_view(b, b.capacity, b.booked)
