"""Subscription-gated tenant operations: payments, withdrawals, orders, bookings."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from dropgate.models.common import Id, Struct, Text, Timestamp
from dropgate.money import Amount, Currency

Quantity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
# PostgreSQL text cannot hold NUL: refused here, or the payment would never reach PostgreSQL.
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                                        description="1-200 characters, no NUL")]


class PaymentCreate(Struct, kw_only=True):
    amount: Amount
    currency: Currency
    reference: Reference


class Payment(msgspec.Struct, kw_only=True):
    payment_id: str
    amount: str
    currency: str
    reference: str
    balance: str
    created_at: Timestamp


class WithdrawalCreate(Struct, kw_only=True):
    amount: Amount
    currency: Currency
    # a label only (default: the key's name); four-eyes compares the keys' names
    initiated_by: Id | None = None


class WithdrawalApprove(Struct, kw_only=True):
    approved_by: Id | None = None  # a label only (default: the key's name)


class WithdrawalReject(Struct, kw_only=True):
    reason: Text | None = None


class Withdrawal(msgspec.Struct, kw_only=True, omit_defaults=True):
    withdrawal_id: str
    status: Literal["pending", "completed", "rejected"]
    amount: str
    currency: str
    initiated_by: str
    created_at: Timestamp
    approved_by: str | None = None
    completed_at: Timestamp | None = None
    balance: str | None = None
    initiated_by_key: str | None = None  # the key ids behind it
    approved_by_key: str | None = None
    rejected_at: Timestamp | None = None
    reason: str | None = None


class OrderItem(Struct, kw_only=True):
    sku: Id
    quantity: Quantity


class OrderCreate(Struct, kw_only=True):
    order_id: Id | None = None
    items: Annotated[list[OrderItem], msgspec.Meta(min_length=1, max_length=1000)]
    total: Amount
    currency: Currency


OrderStatus = Literal["created", "confirmed", "paid", "shipped", "delivered", "canceled"]


class OrderUpdate(Struct, kw_only=True):
    status: OrderStatus | None = None  # {} changes nothing


class Order(msgspec.Struct, kw_only=True):
    order_id: str
    items: list[OrderItem]
    total: str
    currency: str
    status: str
    created_at: Timestamp
    updated_at: Timestamp | None = None


class BookingCreate(Struct, kw_only=True):
    resource_id: Id
    slot_start: Timestamp
    slot_end: Timestamp
    capacity: Capacity | None = None
    user_id: Id


class Booking(msgspec.Struct, kw_only=True):
    booking_id: str
    resource_id: str
    slot_start: Timestamp
    slot_end: Timestamp
    user_id: str
    capacity: int
    booked: int
    created_at: Timestamp
    status: Literal["booked", "canceled"] = "booked"
    canceled_at: Timestamp | None = None
