"""Promo codes."""

from __future__ import annotations

from typing import Annotated

import msgspec

from dropgate.models.common import Id, NonNegative, Struct, Timestamp
from dropgate.money import Amount, Currency, Percent

Limit = Annotated[int, msgspec.Meta(ge=1, le=2_000_000_000)]


class FixedBonus(Struct, tag_field="kind", tag="fixed", kw_only=True):
    """A fixed bonus per use, in the promo's currency."""

    amount: Amount


class PercentBonus(Struct, tag_field="kind", tag="percent", kw_only=True):
    """A percentage of the base amount, rounded half up to the currency's minor unit."""

    percent: Percent


Bonus = FixedBonus | PercentBonus


class PromoCreate(Struct, kw_only=True):
    code: Id
    bonus: Bonus
    currency: Currency
    max_uses: Limit | None = None  # null: unlimited
    per_customer_limit: Limit = 1
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    active: bool = True


class PromoPatch(Struct, kw_only=True):
    active: bool | None = None
    starts_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET  # null clears
    ends_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET  # null clears
    max_uses: Limit | msgspec.UnsetType | None = msgspec.UNSET  # null: unlimited
    per_customer_limit: Limit | None = None


class PromoRedeem(Struct, kw_only=True):
    customer_id: Id
    base_amount: Amount


class Promo(msgspec.Struct, kw_only=True):
    code: str
    bonus: Bonus
    currency: str
    max_uses: int | None
    per_customer_limit: int
    starts_at: Timestamp | None
    ends_at: Timestamp | None
    active: bool
    times_used: NonNegative
    total_bonus_issued: str
    created_at: Timestamp


class PromoRedemption(msgspec.Struct, kw_only=True):
    use_id: str
    code: str
    customer_id: str
    currency: str
    base_amount: str
    bonus_amount: str
    total_amount: str
    times_used: int


class PromoRollback(msgspec.Struct, kw_only=True):
    code: str
    use_id: str
    times_used: int
    total_bonus_issued: str
