"""Promo codes: a bonus per use, counters that always equal the sum over the use records.

Script <-> method: ``promo_create-2.lua`` <-> ``Promos.create``,
``promo_update-2.lua`` <-> ``Promos.update``, ``promo_redeem-7.lua`` <->
``Promos.redeem`` (and ``redeem_keyed``, ``redeem_minor``; coalesced by the engine's
``Batcher``: concurrent redemptions of one code share a script call, each with its own
checks, refusal, use record and event, and, for the HTTP route, its own rate limit and,
under an Idempotency-Key, its own record in the same call), ``promo_rollback-4.lua``
<-> ``Promos.rollback``.

Money is integers of the currency's minor unit end to end; a percent is an integer
of hundredths of a basis point (``money.parse_percent``). The bonus is computed in
the redeem script itself (``dg_percent_of``: exact, half up), in the same atomic
step that writes the use and both counters.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.engine.idempotency import Answered, KeyedAnswer, RecordKey, answered, record_times
from dropgate.engine.ratelimit import rate_limited
from dropgate.engine.redemptions import Redemptions
from dropgate.engine.scripts import keep_arg, patch_arg
from dropgate.errors import DropgateError, NotFound, ValidationError, error_for
from dropgate.ids import new_ordered_id, text
from dropgate.money import parse_amount

RATE_LIMIT_SCOPE = "promo_redeem"
_CURRENCY_CACHE_SIZE = 100_000
# a request's mode in the batch script: redeem, rate limit then redeem, rate limit only
_REDEEM, _LIMIT_AND_REDEEM, _LIMIT_ONLY = 0, 1, 2

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
        s = ctx.settings
        if s.rate_limit_per_s <= 0 or s.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_s must be > 0 and rate_limit_burst >= 1")
        self._rate_interval_ms = 1000.0 / s.rate_limit_per_s
        self._rate_burst = s.rate_limit_burst
        self._idem_ttl_ms, self._idem_stale_ms = record_times(ctx)
        # one script call per batch of a code's redemptions (lib Batcher: no timer, a lone
        # request leaves at once)
        self.redemptions: Redemptions[_Ask, _Outcome] = Redemptions(self._redeem_batch,
                                                                              name="promo_redemptions")

    async def close(self) -> None:
        """Let queued redemptions finish (briefly), then stop their drains."""
        await self.redemptions.close()

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
        key = self._ctx.keys.tenant(tenant_id).promo(code)
        return await self._ctx.read_hash(key, PromoState, "No such promo code.", {"code": code})

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
        self, tenant_id: str, code: str, *, customer_id: str, base_amount: str,
        rate_limit: bool = False,
    ) -> tuple[str, int, Redemption]:
        """Parse ``base_amount`` in the promo's currency and redeem.

        ``rate_limit``: first spend one request of the customer's allowance (the HTTP
        route's limit), in the same script call; RateLimited before any other answer.
        Returns (currency, base in minor units, the script's answer).
        """
        outcome = await self._redeem(tenant_id, code, customer_id, base_amount, rate_limit, 0)
        assert isinstance(outcome, tuple)
        return outcome

    async def redeem_keyed(
        self, tenant_id: str, code: str, *, customer_id: str, base_amount: str, rate_limit: bool = False,
        record: RecordKey,
    ) -> Answered[tuple[str, int, Redemption]]:
        """``redeem`` under an Idempotency-Key: a repeat gets the first answer (and spends
        no rate limit), filed in the same script call as the use itself."""
        outcome = await self._redeem(tenant_id, code, customer_id, base_amount, rate_limit, record)
        assert isinstance(outcome, Answered)
        return outcome

    async def _redeem(self, tenant_id: str, code: str, customer_id: str, base_amount: str, rate_limit: bool,
                      record: RecordKey | int) -> tuple[str, int, Redemption] | Answered[tuple[str, int, Redemption]]:
        limit = rate_limit
        for attempt in (1, 2):
            try:
                currency = self._currencies.get((tenant_id, code)) or await self.currency(tenant_id, code)
                base = parse_amount(base_amount, currency, field="base_amount")
            except (NotFound, ValidationError):
                if limit:  # the limit is spent (and refuses) first, whatever follows
                    await self._submit(tenant_id, code, _Ask(customer_id, "", "", "", _LIMIT_ONLY))
                raise
            # ``redeem_minor``'s call, inlined: a crowd's request resumes through each
            # coroutine it awaits in (BENCHMARKS.md, "The hot routes' own path")
            ask = _redeem_ask(customer_id, base, currency, None, limit, record)
            try:
                result = await self._submit(tenant_id, code, ask)
            except ValidationError as exc:
                stale = self._stale_currency(tenant_id, code, exc, currency)
                if attempt == 2 or not stale:
                    raise
                limit = False  # spent by the first attempt
                continue
            if isinstance(result, Answered):
                error = result.error
                if (attempt == 1 and isinstance(error, ValidationError) and not result.replayed
                        and self._stale_currency(tenant_id, code, error, currency)):
                    limit = False
                    continue
                return result
            assert result is not None
            return currency, base, result
        raise AssertionError("unreachable")

    def _stale_currency(self, tenant_id: str, code: str, exc: ValidationError, currency: str) -> bool:
        """The code was recreated (Redis restored, say) in another currency than the one
        cached: forget it, so that the next try parses the base in the stored one."""
        stored = exc.details.get("currency")
        if stored is None or stored == currency:
            return False
        self._currencies.pop((tenant_id, code), None)
        return True

    async def redeem_minor(
        self, tenant_id: str, code: str, *, customer_id: str, base_minor: int, currency: str,
        use_id: str | None = None, rate_limit: bool = False,
    ) -> Redemption:
        """Redeem for ``base_minor`` minor units of ``currency`` (the script checks it)."""
        result = await self._submit(tenant_id, code, _redeem_ask(customer_id, base_minor, currency,
                                                                 use_id, rate_limit))
        assert isinstance(result, Redemption)
        return result

    def _submit(self, tenant_id: str, code: str, ask: _Ask) -> asyncio.Future[_Outcome]:
        """Queue one request with the code's next batch; its future gets its own answer or
        refusal. A plain function, awaited at once by its callers (one coroutine less for
        a crowd's request to resume through); they are coroutines, so nothing is queued
        before the engine's caller awaits it."""
        self._ctx.keys.tenant(tenant_id).promo(code)  # a bad id is this caller's 400 alone
        return self.redemptions.submit(tenant_id, code, ask)

    async def _redeem_batch(self, key: tuple[str, str], asks: list[_Ask]
                            ) -> list[_Outcome | BaseException]:
        """One script call deciding a batch of one code's redemptions, each on its own."""
        tenant_id, code = key
        tk = self._ctx.keys.tenant(tenant_id)
        answers = await self._ctx.scripts.call(
            "promo_redeem",
            [tk.log, tk.promo(code), tk.promo_uses(code), tk.promo_customers(code),
             tk.ratelimit_table(RATE_LIMIT_SCOPE), tk.offer_idempotency(), tk.offer_idempotency_expiry()],
            [self._ctx.backlog_bound, tenant_id, code, self._rate_interval_ms, self._rate_burst,
             _encode_asks(asks), self._idem_ttl_ms, self._idem_stale_ms],
            type=list[_Answer],
        )
        return [_outcome(ask, answer) for ask, answer in zip(asks, answers, strict=True)]

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


class _Ask(msgspec.Struct, array_like=True, frozen=True):
    """One request waiting for its code's next script call (a JSON array, in ARGV order)."""

    customer_id: str
    base: str  # minor units, as text (the script parses and bounds it)
    currency: str
    use_id: str
    mode: int
    record: RecordKey | int = 0  # its record under an Idempotency-Key (0: none)


def _redeem_ask(customer_id: str, base_minor: int, currency: str, use_id: str | None,
                rate_limit: bool, record: RecordKey | int = 0) -> _Ask:
    """A redemption's entry in its batch (with the customer's rate limit first, or not)."""
    return _Ask(customer_id, str(base_minor), currency, use_id or new_use_id(),
                _LIMIT_AND_REDEEM if rate_limit else _REDEEM, record)


_encode_asks = msgspec.json.Encoder().encode


class _Answer(KeyedAnswer, kw_only=True):
    """One request's entry in a batch answer: its redemption, or its own refusal."""

    use_id: str = ""
    bonus_amount: int = 0
    total_amount: int = 0
    times_used: int = 0
    total_bonus_issued: int = 0
    base_amount: int = 0
    currency: str = ""
    limited: int = 0


# a request's outcome: its redemption, None (rate limit only), or a keyed request's
_Outcome = Redemption | None | Answered[tuple[str, int, Redemption]]


def _outcome(ask: _Ask, a: _Answer) -> _Outcome | DropgateError:
    refusal: DropgateError | None = None
    if a.err == "RATE_LIMITED":
        refusal = rate_limited(RATE_LIMIT_SCOPE, ask.customer_id, int(a.details["retry_after_ms"]))
    elif a.err is not None:
        refusal = error_for(a.err, details=a.details or None)
    if ask.record != 0:
        if refusal is not None:
            return Answered(None, refusal, a.replayed == 1)
        return answered(a, (a.currency, a.base_amount, _redemption(a)))
    if refusal is not None:
        return refusal
    if a.limited:
        return None
    return _redemption(a)


def _redemption(a: _Answer) -> Redemption:
    return Redemption(use_id=a.use_id, bonus_amount=a.bonus_amount, total_amount=a.total_amount,
                      times_used=a.times_used, total_bonus_issued=a.total_bonus_issued)


def new_use_id() -> str:
    """A promo use's id: in time order (``new_ordered_id``), as the uses' primary key wants."""
    return new_ordered_id("use_")
