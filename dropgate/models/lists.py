"""List answers (v1.1): ``{data, has_more, next_cursor}`` pages and the items only lists show.

Items that a single-entity ``GET`` already answers reuse that struct (``Invite``,
``Promo``, ``Offer``, ``Purchase``, ...); the rest are here. One page struct per
list keeps ``/openapi.json`` and docs/api.md naming a concrete type each.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from dropgate.models.codes import Campaign, CodeInfo
from dropgate.models.common import Timestamp
from dropgate.models.invites import Invite
from dropgate.models.ledger import Booking, Order, Withdrawal
from dropgate.models.offers import Offer, Purchase
from dropgate.models.promos import Promo


class TenantItem(msgspec.Struct, kw_only=True):
    tenant_id: str
    name: str
    subscription_status: str
    trial_end: Timestamp | None
    created_at: Timestamp


class KeyItem(msgspec.Struct, kw_only=True):
    """An API key as lists show it: never its secret."""

    key_id: str
    role: Literal["admin", "service"]
    tenant_id: str | None
    name: str | None
    created_at: Timestamp
    revoked_at: Timestamp | None


class InviteUse(msgspec.Struct, kw_only=True):
    user_id: str
    used_at: Timestamp


class PromoUse(msgspec.Struct, kw_only=True):
    use_id: str
    customer_id: str
    currency: str
    base_amount: str
    bonus_amount: str
    total_amount: str
    used_at: Timestamp
    rolled_back: bool


class PaymentItem(msgspec.Struct, kw_only=True):
    payment_id: str
    amount: str
    currency: str
    reference: str
    created_at: Timestamp


class _Page(msgspec.Struct, kw_only=True):
    has_more: bool
    next_cursor: str | None


class TenantPage(_Page, kw_only=True):
    data: list[TenantItem]


class KeyPage(_Page, kw_only=True):
    data: list[KeyItem]


class InvitePage(_Page, kw_only=True):
    data: list[Invite]


class InviteUsePage(_Page, kw_only=True):
    data: list[InviteUse]


class PromoPage(_Page, kw_only=True):
    data: list[Promo]


class PromoUsePage(_Page, kw_only=True):
    data: list[PromoUse]


class OfferPage(_Page, kw_only=True):
    data: list[Offer]


class PurchasePage(_Page, kw_only=True):
    data: list[Purchase]


class PaymentPage(_Page, kw_only=True):
    data: list[PaymentItem]


class WithdrawalPage(_Page, kw_only=True):
    data: list[Withdrawal]


class OrderPage(_Page, kw_only=True):
    data: list[Order]


class BookingPage(_Page, kw_only=True):
    data: list[Booking]


class CampaignPage(_Page, kw_only=True):
    data: list[Campaign]


class CodePage(_Page, kw_only=True):
    data: list[CodeInfo]
