"""Promo codes: a bonus per use, counters that always equal the sum over the use records.

Script <-> method: ``promo_create-2.lua`` <-> ``Promos.create``,
``promo_update-2.lua`` <-> ``Promos.update``, ``promo_redeem-4.lua`` <->
``Promos.redeem``, ``promo_rollback-4.lua`` <-> ``Promos.rollback``.

Money is integers of the currency's minor unit end to end; a percent is an integer
of hundredths of a basis point (``money.parse_percent``). The bonus is computed in
the redeem script itself (``dg_percent_of``: exact, half up), in the same atomic
step that writes the use and both counters.
"""

from __future__ import annotations

import secrets
from typing import Literal

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.engine.ratelimit import RateLimiter
from dropgate.engine.scripts import keep_arg, patch_arg
from dropgate.errors import NotFound, ValidationError
from dropgate.ids import text, text_map
from dropgate.money import parse_amount

RATE_LIMIT_SCOPE = "promo_redeem"
_CURRENCY_CACHE_SIZE = 100_000

BonusKind = Literal["fixed", "percent"]


class PromoState(msgspec.Struct, kw_only=True):
    """The promo hash as Redis holds it (amounts in minor units, percent in 1/10000 %)."""

    tenant_id: str
    code: str
    kind: BonusKind
    amount: int | None = None
    percent: int | None = None
    currency: str
    max_uses: int | None = None
    per_customer_limit: int
    starts_at_ms: int | None = None
    ends_at_ms: int | None = None
    active: bool
    times_used: int
    total_bonus_issued: int
    created_ms: int
    version: int


class Redemption(msgspec.Struct, kw_only=True):
    use_id: str
    bonus_amount: int
    total_amount: int
    times_used: int
    total_bonus_issued: int


class Rollback(msgspec.Struct, kw_only=True):
    times_used: int
    total_bonus_issued: int
    bonus_amount: int
    customer_id: str
    currency: str


class PromoUse(msgspec.Struct, kw_only=True):
    """One use record (the value of the uses hash)."""

    customer_id: str
    base_amount: int
    bonus_amount: int
    at_ms: int


_use_decoder = msgspec.json.Decoder(PromoUse)


class Promos:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        # (tenant, code) -> currency: fixed at creation, so a redemption needs no extra
        # read; the redeem script checks it anyway (see ``redeem``).
        self._currencies: dict[tuple[str, str], str] = {}
        # The shared GCRA limiter; the HTTP route takes one per customer before redeeming.
        self.limiter = RateLimiter(ctx, rate_per_s=ctx.settings.rate_limit_per_s,
                                   burst=ctx.settings.rate_limit_burst)

    async def create(
        self,
        tenant_id: str,
        *,
        code: str,
        kind: BonusKind,
        value: int,
        currency: str,
        max_uses: int | None = None,
        per_customer_limit: int = 1,
        starts_at_ms: int | None = None,
        ends_at_ms: int | None = None,
        active: bool = True,
    ) -> PromoState:
        """``value``: the fixed amount in minor units, or the percent in 1/10000 %."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "promo_create",
            [tk.log, tk.promo(code)],
            [self._ctx.backlog_bound, tenant_id, code, kind, value, currency, keep_arg(max_uses),
             per_customer_limit, keep_arg(starts_at_ms), keep_arg(ends_at_ms), "1" if active else "0"],
            type=PromoState,
        )

    async def update(
        self,
        tenant_id: str,
        code: str,
        *,
        active: bool | None = None,
        starts_at_ms: int | msgspec.UnsetType | None = msgspec.UNSET,
        ends_at_ms: int | msgspec.UnsetType | None = msgspec.UNSET,
        max_uses: int | msgspec.UnsetType | None = msgspec.UNSET,
        per_customer_limit: int | None = None,
    ) -> PromoState:
        """``None`` clears a time or lifts max_uses; ``UNSET`` (and ``None`` for the rest) keeps."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "promo_update",
            [tk.log, tk.promo(code)],
            [self._ctx.backlog_bound, tenant_id, code,
             keep_arg(active), patch_arg(starts_at_ms), patch_arg(ends_at_ms), patch_arg(max_uses),
             keep_arg(per_customer_limit)],
            type=PromoState,
        )

    async def get(self, tenant_id: str, code: str) -> PromoState:
        raw = await self._ctx.redis.hgetall(self._ctx.keys.tenant(tenant_id).promo(code))
        if not raw:
            raise NotFound("No such promo code.", details={"code": code})
        return msgspec.convert(text_map(raw), PromoState, strict=False)

    async def currency(self, tenant_id: str, code: str) -> str:
        """The promo's currency (fixed at creation): needed to parse a base amount."""
        cached = self._currencies.get((tenant_id, code))
        if cached is not None:
            return cached
        raw = await self._ctx.redis.hget(self._ctx.keys.tenant(tenant_id).promo(code), "currency")
        if raw is None:
            raise NotFound("No such promo code.", details={"code": code})
        if len(self._currencies) >= _CURRENCY_CACHE_SIZE:
            self._currencies.clear()
        self._currencies[(tenant_id, code)] = currency = text(raw)
        return currency

    async def redeem(
        self, tenant_id: str, code: str, *, customer_id: str, base_amount: str
    ) -> tuple[str, int, Redemption]:
        """Parse ``base_amount`` in the promo's currency and redeem.

        Returns (currency, base in minor units, the script's answer).
        """
        for attempt in (1, 2):
            currency = await self.currency(tenant_id, code)
            base = parse_amount(base_amount, currency, field="base_amount")
            try:
                return currency, base, await self.redeem_minor(
                    tenant_id, code, customer_id=customer_id, base_minor=base, currency=currency)
            except ValidationError as exc:
                # the code was recreated (Redis restored, say) in another currency
                stored = exc.details.get("currency")
                if attempt == 2 or stored is None or stored == currency:
                    raise
                self._currencies.pop((tenant_id, code), None)
        raise AssertionError("unreachable")

    async def redeem_minor(
        self, tenant_id: str, code: str, *, customer_id: str, base_minor: int, currency: str,
        use_id: str | None = None,
    ) -> Redemption:
        """Redeem for ``base_minor`` minor units of ``currency`` (the script checks it)."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "promo_redeem",
            [tk.log, tk.promo(code), tk.promo_uses(code), tk.promo_customers(code)],
            [self._ctx.backlog_bound, tenant_id, code, customer_id, base_minor, currency,
             use_id or new_use_id()],
            type=Redemption,
        )

    async def rollback(self, tenant_id: str, code: str, use_id: str) -> Rollback:
        """Undo one use exactly; a second rollback of the same use is NotFound."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "promo_rollback",
            [tk.log, tk.promo(code), tk.promo_uses(code), tk.promo_customers(code)],
            [self._ctx.backlog_bound, tenant_id, code, use_id],
            type=Rollback,
        )

    async def uses(self, tenant_id: str, code: str) -> dict[str, PromoUse]:
        """Every live use record of a code (a read: HSCAN, never a write)."""
        key = self._ctx.keys.tenant(tenant_id).promo_uses(code)
        found: dict[str, PromoUse] = {}
        async for use_id, raw in self._ctx.redis.hscan_iter(key, count=1000):
            found[text(use_id)] = _use_decoder.decode(raw)
        return found


def new_use_id() -> str:
    return "use_" + secrets.token_hex(10)
