"""Offers and purchases."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from dropgate.models.common import Id, NonNegative, Struct, Timestamp
from dropgate.money import Amount, Currency

Inventory = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
MaxPerOrder = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
# QUANTITY_LIMIT (not a generic 400) answers a quantity over max_per_order, so the
# struct only bounds it loosely; the script compares it with the offer's limit.
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
# PostgreSQL text cannot hold NUL: refused here, or the offer would never reach PostgreSQL.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                                   description="1-200 characters, no NUL")]
MaxPerUser = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
# Where a checkout returns the buyer: absolute http(s); {CHECKOUT_SESSION_ID} and
# {PURCHASE_ID} are filled in.
# No control character anywhere: a NUL would never reach PostgreSQL (the event carrying the URL
# dead-letters), and none belongs in a URL (make fuzz found one accepted).
RedirectUrl = Annotated[str, msgspec.Meta(max_length=2048,
                                          pattern=r"^https?://[^\s\x00-\x1f\x7f/?#]+[^\s\x00-\x1f\x7f]*$",
                                          description="an absolute http(s) URL")]
PurchaseStatus = Literal["pending", "paid", "released", "expired", "refunded", "canceled",
                         "partially_refunded", "disputed", "failed"]


class OfferCreate(Struct, kw_only=True):
    offer_id: Id | None = None
    event_id: Id
    name: Name
    price: Amount
    currency: Currency
    inventory_total: Inventory
    max_per_order: MaxPerOrder = 10
    expires_at: Timestamp | None = None
    active: bool = True
    max_per_user: MaxPerUser | None = None
    success_url: RedirectUrl | None = None
    cancel_url: RedirectUrl | None = None


class OfferPatch(Struct, kw_only=True):
    inventory_total: Inventory | None = None
    active: bool | None = None
    archived: bool | None = None
    expires_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    max_per_user: MaxPerUser | msgspec.UnsetType | None = msgspec.UNSET  # null removes the cap
    success_url: RedirectUrl | msgspec.UnsetType | None = msgspec.UNSET  # null: the tenant's, else dropgate's
    cancel_url: RedirectUrl | msgspec.UnsetType | None = msgspec.UNSET


class OfferInventory(msgspec.Struct, kw_only=True):
    total: NonNegative
    available: NonNegative
    reserved: NonNegative
    sold: NonNegative


class Offer(msgspec.Struct, kw_only=True):
    offer_id: str
    event_id: str
    name: str
    price: str
    currency: str
    max_per_order: int
    active: bool
    archived: bool
    expires_at: Timestamp | None
    created_at: Timestamp
    inventory: OfferInventory
    max_per_user: int | None = None
    success_url: str | None = None
    cancel_url: str | None = None


class OfferList(msgspec.Struct, kw_only=True):
    offers: list[Offer]


class PurchaseRequest(Struct, kw_only=True):
    user_id: Id
    quantity: Quantity = 1


class PurchaseCreated(msgspec.Struct, kw_only=True):
    purchase_id: str
    status: PurchaseStatus
    checkout_session_id: str
    checkout_url: str
    expires_at: Timestamp


class Purchase(msgspec.Struct, kw_only=True):
    purchase_id: str
    offer_id: str
    user_id: str
    quantity: int
    status: PurchaseStatus
    amount: str
    currency: str
    expires_at: Timestamp
    created_at: Timestamp
    refunded_amount: str = "0"  # what was given back so far, in the purchase's currency


class PurchaseRefund(Struct, kw_only=True):
    """``amount`` (default: all that is left of the payment) and ``restock`` (a full
    refund returns the units to available; default true)."""

    amount: Amount | None = None
    restock: bool = True


class WebhookAck(msgspec.Struct, kw_only=True):
    received: bool
    outcome: str


class SandboxResult(msgspec.Struct, kw_only=True):
    """What the sandbox's Pay / Cancel did: the webhook it sent itself and the answer."""

    webhook_status: int
    webhook_response: dict[str, Any]
