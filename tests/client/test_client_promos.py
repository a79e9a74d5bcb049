"""``client.promos`` against the live server: every method and the refusals it can meet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from dropgate.client import (
    AlreadyExists,
    AsyncDropgate,
    Conflict,
    CustomerLimit,
    Exhausted,
    Expired,
    Inactive,
    NotFound,
    NotStarted,
    RateLimited,
    ValidationError,
)
from dropgate.models.promos import FixedBonus, PercentBonus, Promo, PromoRedemption, PromoRollback


async def test_create_get_update_redeem_rollback(dg: AsyncDropgate) -> None:
    ends = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    promo = await dg.promos.create("SPRING", bonus=FixedBonus(amount="5"), currency="usd",
                                   max_uses=3, per_customer_limit=2, ends_at=ends)
    assert isinstance(promo, Promo)
    assert (promo.code, promo.bonus, promo.max_uses, promo.times_used, promo.total_bonus_issued,
            promo.ends_at, promo.starts_at) == ("SPRING", FixedBonus(amount="5.00"), 3, 0, "0.00", ends,
                                                None)
    used = await dg.promos.redeem("SPRING", customer_id="c1", base_amount="20.00")
    assert used == PromoRedemption(use_id=used.use_id, code="SPRING", customer_id="c1", currency="usd",
                                   base_amount="20.00", bonus_amount="5.00", total_amount="25.00",
                                   times_used=1)
    assert (await dg.promos.get("SPRING")).total_bonus_issued == "5.00"
    updated = await dg.promos.update("SPRING", max_uses=None, ends_at=None, per_customer_limit=5)
    assert (updated.max_uses, updated.ends_at, updated.per_customer_limit, updated.active) == (
        None, None, 5, True)
    assert await dg.promos.update("SPRING") == updated  # nothing given, nothing changed
    undone = await dg.promos.rollback("SPRING", use_id=used.use_id)
    assert undone == PromoRollback(code="SPRING", use_id=used.use_id, times_used=0,
                                   total_bonus_issued="0.00")
    percent = await dg.promos.create("TENPC", bonus=PercentBonus(percent="12.5"), currency="jpy")
    assert percent.max_uses is None and percent.per_customer_limit == 1
    assert (await dg.promos.redeem("TENPC", customer_id="c1", base_amount="1001")).bonus_amount == "125"


async def test_refusals(dg: AsyncDropgate) -> None:
    now = datetime.now(UTC)
    await dg.promos.create("ONE", bonus=FixedBonus(amount="1.00"), currency="eur", max_uses=1)
    with pytest.raises(AlreadyExists):
        await dg.promos.create("ONE", bonus=FixedBonus(amount="1.00"), currency="eur")
    with pytest.raises(ValidationError) as bad_amount:  # eur has two decimals
        await dg.promos.create("BAD", bonus=FixedBonus(amount="1.001"), currency="eur")
    assert bad_amount.value.details["field"] == "bonus.amount"
    with pytest.raises(ValidationError):
        await dg.promos.create("BAD", bonus=FixedBonus(amount="1"), currency="eur",
                               starts_at=now, ends_at=now - timedelta(hours=1))
    with pytest.raises(NotFound):
        await dg.promos.get("NOPE")
    with pytest.raises(NotFound):
        await dg.promos.redeem("NOPE", customer_id="c1", base_amount="1")
    await dg.promos.redeem("ONE", customer_id="c1", base_amount="10")
    with pytest.raises(CustomerLimit):
        await dg.promos.redeem("ONE", customer_id="c1", base_amount="10")
    with pytest.raises(Exhausted):
        await dg.promos.redeem("ONE", customer_id="c2", base_amount="10")
    await dg.promos.update("ONE", max_uses=5)
    await dg.promos.redeem("ONE", customer_id="c2", base_amount="10")  # times_used 2
    with pytest.raises(Conflict):  # max_uses below times_used
        await dg.promos.update("ONE", max_uses=1)
    await dg.promos.update("ONE", active=False)
    with pytest.raises(Inactive):
        await dg.promos.redeem("ONE", customer_id="c3", base_amount="10")
    await dg.promos.create("LATER", bonus=FixedBonus(amount="1"), currency="eur",
                           starts_at=now + timedelta(days=1))
    with pytest.raises(NotStarted):
        await dg.promos.redeem("LATER", customer_id="c1", base_amount="10")
    await dg.promos.create("PAST", bonus=FixedBonus(amount="1"), currency="eur",
                           starts_at=now - timedelta(days=2), ends_at=now - timedelta(days=1))
    with pytest.raises(Expired):
        await dg.promos.redeem("PAST", customer_id="c1", base_amount="10")
    await dg.promos.create("FRESH", bonus=FixedBonus(amount="1"), currency="eur")
    used = await dg.promos.redeem("FRESH", customer_id="c1", base_amount="1")
    await dg.promos.rollback("FRESH", use_id=used.use_id)
    with pytest.raises(NotFound):  # twice
        await dg.promos.rollback("FRESH", use_id=used.use_id)
    with pytest.raises(NotFound):
        await dg.promos.update("NOPE", active=False)


async def test_one_customer_past_the_burst_is_rate_limited(dg: AsyncDropgate) -> None:
    await dg.promos.create("MANY", bonus=FixedBonus(amount="1"), currency="usd",
                           per_customer_limit=1000)
    results = await asyncio.gather(*(dg.promos.redeem("MANY", customer_id="busy", base_amount="1")
                                     for _ in range(30)), return_exceptions=True)
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert limited and all(r.retry_after is not None and r.retry_after > 0 for r in limited)
    assert all(isinstance(r, PromoRedemption | RateLimited) for r in results), results
    ok = len(results) - len(limited)
    assert (await dg.promos.get("MANY")).times_used == ok
