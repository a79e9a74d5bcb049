"""Promo codes (tenant)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from aiohttp import web

from dropgate.engine.promos import BonusKind, PromoState, Redemption
from dropgate.errors import (
    AlreadyExists,
    Conflict,
    CustomerLimit,
    Exhausted,
    Expired,
    Inactive,
    NotFound,
    NotStarted,
    PersistenceLagging,
    RateLimited,
    ValidationError,
)
from dropgate.http.idempotency import request_record
from dropgate.http.routing import ApiRoutes, Call
from dropgate.ids import dt_to_ms, ms_to_dt
from dropgate.models.promos import (
    Bonus,
    FixedBonus,
    PercentBonus,
    Promo,
    PromoCreate,
    PromoPatch,
    PromoRedeem,
    PromoRedemption,
    PromoRollback,
)
from dropgate.money import format_amount, format_percent, parse_amount, parse_percent

routes = ApiRoutes("promos")


def promo_view(state: PromoState) -> Promo:
    bonus: Bonus
    if state.kind == "fixed":
        assert state.amount is not None
        bonus = FixedBonus(amount=format_amount(state.amount, state.currency))
    else:
        assert state.percent is not None
        bonus = PercentBonus(percent=format_percent(state.percent))
    created = ms_to_dt(state.created_ms)
    assert created is not None
    return Promo(
        code=state.code, bonus=bonus, currency=state.currency, max_uses=state.max_uses,
        per_customer_limit=state.per_customer_limit, starts_at=ms_to_dt(state.starts_at_ms),
        ends_at=ms_to_dt(state.ends_at_ms), active=state.active, times_used=state.times_used,
        total_bonus_issued=format_amount(state.total_bonus_issued, state.currency),
        created_at=created,
    )


def _ms(value: datetime | msgspec.UnsetType | None, field: str) -> int | msgspec.UnsetType | None:
    """PATCH times: UNSET keeps, None clears, a time sets."""
    return dt_to_ms(value, field) if isinstance(value, datetime) else value


@routes.post("/v1/promos", body=PromoCreate, response=Promo, status=201,
             errors=[ValidationError, AlreadyExists, PersistenceLagging])
async def create_promo(call: Call[PromoCreate]) -> Promo:
    """Create a promo code with a fixed or percent bonus."""
    b = call.body
    kind: BonusKind
    if isinstance(b.bonus, FixedBonus):
        kind, value = "fixed", parse_amount(b.bonus.amount, b.currency, field="bonus.amount")
    else:
        kind, value = "percent", parse_percent(b.bonus.percent, field="bonus.percent")
    starts, ends = dt_to_ms(b.starts_at, "starts_at"), dt_to_ms(b.ends_at, "ends_at")
    if starts is not None and ends is not None and ends <= starts:
        raise ValidationError("ends_at must be after starts_at.", details={"field": "ends_at"})
    state = await call.runtime.promos.create(
        call.tenant_id, code=b.code, kind=kind, value=value,
        currency=b.currency, max_uses=b.max_uses, per_customer_limit=b.per_customer_limit,
        starts_at_ms=starts, ends_at_ms=ends, active=b.active,
    )
    return promo_view(state)


@routes.get("/v1/promos/{code}", response=Promo, errors=[NotFound])
async def get_promo(call: Call[None]) -> Promo:
    """A promo code with times_used and total_bonus_issued (from Redis, the live state)."""
    return promo_view(await call.runtime.promos.get(call.tenant_id, call.path_id("code")))


@routes.patch("/v1/promos/{code}", body=PromoPatch, response=Promo,
              errors=[ValidationError, NotFound, Conflict, PersistenceLagging])
async def update_promo(call: Call[PromoPatch]) -> Promo:
    """Deactivate, move the window, or change limits (max_uses never below times_used).

    A deactivation is final the moment it answers: no redemption commits after it.
    """
    b = call.body
    state = await call.runtime.promos.update(
        call.tenant_id, call.path_id("code"), active=b.active,
        starts_at_ms=_ms(b.starts_at, "starts_at"), ends_at_ms=_ms(b.ends_at, "ends_at"), max_uses=b.max_uses,
        per_customer_limit=b.per_customer_limit,
    )
    return promo_view(state)


@routes.post("/v1/promos/{code}/redeem", body=PromoRedeem, response=PromoRedemption, status=201,
             errors=[ValidationError, NotFound, Inactive, NotStarted, Expired, CustomerLimit,
                     Exhausted, Conflict, RateLimited, PersistenceLagging], keys_in_handler=True, hot=True)
async def redeem_promo(call: Call[PromoRedeem]) -> PromoRedemption | web.StreamResponse:
    """Use the code on a purchase: the bonus, the total, and the code's times_used."""
    code = call.path_id("code")
    b = call.body
    promos = call.runtime.promos
    # the customer's rate limit is taken in the same (batched) script call, first (after
    # a keyed request's record: a repeat spends none)
    record = request_record(call.request, call.tenant_id, call.raw)
    if record is None:
        return promo_redemption(code, b.customer_id, await promos.redeem(
            call.tenant_id, code, customer_id=b.customer_id, base_amount=b.base_amount, rate_limit=True))
    outcome = await promos.redeem_keyed(call.tenant_id, code, customer_id=b.customer_id,
                                        base_amount=b.base_amount, rate_limit=True, record=record)
    return call.keyed(outcome, lambda redeemed: promo_redemption(code, b.customer_id, redeemed))


def promo_redemption(code: str, customer_id: str, redeemed: tuple[str, int, Redemption]) -> PromoRedemption:
    """A redemption's answer: (currency, base in minor units, the script's answer)."""
    currency, base, r = redeemed
    return PromoRedemption(
        use_id=r.use_id, code=code, customer_id=customer_id, currency=currency,
        base_amount=format_amount(base, currency), bonus_amount=format_amount(r.bonus_amount, currency),
        total_amount=format_amount(r.total_amount, currency), times_used=r.times_used,
    )


@routes.delete("/v1/promos/{code}/uses/{use_id}", response=PromoRollback,
               errors=[NotFound, PersistenceLagging])
async def rollback_promo_use(call: Call[None]) -> PromoRollback:
    """Roll back one use: both counters go back by exactly what it added (twice: 404)."""
    code, use_id = call.path_id("code"), call.path_id("use_id")
    r = await call.runtime.promos.rollback(call.tenant_id, code, use_id)
    return PromoRollback(code=code, use_id=use_id, times_used=r.times_used,
                         total_bonus_issued=format_amount(r.total_bonus_issued, r.currency))
