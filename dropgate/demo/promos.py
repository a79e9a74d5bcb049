"""Promo codes in the demo: a crowd redeeming limited codes, some uses rolled back."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from dropgate.demo.base import DemoContext, DemoDomain, DomainReport
from dropgate.money import format_amount

# code -> (bonus, currency, max_uses at scale 1 or None, per_customer_limit)
_PROMOS: dict[str, tuple[dict[str, str], str, int | None, int]] = {
    "WELCOME10": ({"kind": "percent", "percent": "10"}, "usd", 300, 1),
    "FIVE-OFF": ({"kind": "fixed", "amount": "5.00"}, "usd", 100, 2),
    "YEN-12.5": ({"kind": "percent", "percent": "12.5"}, "jpy", None, 1),
}


class PromosDemo(DemoDomain):
    name = "promos"

    async def setup(self, ctx: DemoContext) -> None:
        self.max_uses: dict[str, int | None] = {}
        for code, (bonus, currency, max_uses, per_customer) in _PROMOS.items():
            limit = ctx.n(max_uses) if max_uses else None
            self.max_uses[code] = limit
            status, body = await ctx.call("POST", "/v1/promos", json={
                "code": code, "bonus": bonus, "currency": currency, "max_uses": limit,
                "per_customer_limit": per_customer})
            if status not in (201, 409):
                raise RuntimeError(f"demo: creating promo {code} failed: {body}")
        self.customers = [f"customer{i}" for i in range(ctx.n(1200))]
        ctx.progress.add_total(2 * len(self.customers))

    async def crowd(self, ctx: DemoContext, report: DomainReport) -> None:
        rng = random.Random(11)
        plans = [(c, rng.choice(list(_PROMOS)), rng.random()) for c in self.customers]

        async def one(customer: str, code: str, luck: float) -> None:
            currency = _PROMOS[code][1]
            for attempt in range(2):  # everyone tries twice: the second hits a limit at best
                base = format_amount(random.Random(customer + str(attempt)).randint(100, 20000),
                                     currency)
                status, body = await ctx.call("POST", f"/v1/promos/{code}/redeem",
                                              json={"customer_id": customer, "base_amount": base})
                report.record(status, body)
                ctx.progress.advance()
                if status == 201 and luck < 0.1:  # the purchase failed: roll the use back
                    path = f"/v1/promos/{code}/uses/{body['use_id']}"
                    report.record(*await ctx.call("DELETE", path))
                    if luck < 0.02:  # a retried rollback changes nothing (404)
                        report.record(*await ctx.call("DELETE", path))

        await asyncio.gather(*(one(*plan) for plan in plans))

    async def verify(self, ctx: DemoContext, report: DomainReport) -> None:
        rt = ctx.runtime
        exact, pg_equal, within_limits = True, True, True
        issued: list[str] = []
        for code, max_uses in self.max_uses.items():
            state = await rt.promos.get(ctx.tenant_id, code)
            uses = await rt.promos.uses(ctx.tenant_id, code)
            exact &= state.times_used == len(uses) and state.total_bonus_issued == sum(
                u.bonus_amount for u in uses.values())
            per_customer: dict[str, int] = {}
            for u in uses.values():
                per_customer[u.customer_id] = per_customer.get(u.customer_id, 0) + 1
            within_limits &= max(per_customer.values(), default=0) <= state.per_customer_limit
            if max_uses is not None and state.times_used > max_uses:
                report.oversell += state.times_used - max_uses
            rows: dict[str, Any] = {r["use_id"]: (r["customer_id"], r["bonus_amount"])
                                    for r in await rt.pool.fetch(
                "SELECT use_id, customer_id, bonus_amount FROM promo_code_uses"
                " WHERE tenant_id = $1 AND code = $2", ctx.tenant_id, code)}
            counters = await rt.pool.fetchrow(
                "SELECT times_used, total_bonus_issued FROM promo_codes"
                " WHERE tenant_id = $1 AND code = $2", ctx.tenant_id, code)
            pg_equal &= counters is not None and rows == {
                k: (u.customer_id, u.bonus_amount) for k, u in uses.items()
            } and (counters["times_used"], counters["total_bonus_issued"]) == (
                state.times_used, state.total_bonus_issued)
            issued.append(f"{code}: {state.times_used} uses, "
                          f"{format_amount(state.total_bonus_issued, state.currency)} {state.currency}")
        report.checks["counters == sum of use records"] = exact
        report.checks["per-customer limits held"] = within_limits
        report.checks["PostgreSQL rows and counters == Redis"] = pg_equal
        report.notes.append("bonus issued: " + "; ".join(issued))
