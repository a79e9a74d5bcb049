"""Offers in the demo: a crowd buying a limited drop through the sandbox checkout.

Two offers (200 VIP, 1,000 GA units, the default per-order limit); every user tries to buy
1-3 units with an Idempotency-Key and retries once with the same key (a replay,
never a second hold). Then most buyers pay on the sandbox checkout page (a signed
``checkout.session.completed`` webhook), some abandon it (``...expired``), the rest
leave their hold pending. Checks: nothing oversold, sold equals what the paid
purchases hold, and PostgreSQL's rows agree with Redis.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from dropgate.demo.base import DemoContext, DemoDomain, DomainReport

_OFFERS = {"DROP-VIP": 200, "DROP-GA": 1000}


class OffersDemo(DemoDomain):
    name = "offers"

    async def setup(self, ctx: DemoContext) -> None:
        for offer_id, total in _OFFERS.items():
            status, body = await ctx.call("POST", "/v1/offers", json={
                "offer_id": offer_id, "event_id": "demo-drop", "name": offer_id, "price": "49.00",
                "currency": "usd", "inventory_total": total})
            if status not in (201, 409):
                raise RuntimeError(f"demo: creating offer {offer_id} failed: {body}")
        self.users = [f"buyer{i}" for i in range(ctx.n(1200))]
        self.holds: list[dict[str, Any]] = []
        ctx.progress.add_total(2 * len(self.users))

    async def crowd(self, ctx: DemoContext, report: DomainReport) -> None:
        rng = random.Random(11)
        plan = [(u, rng.choice(list(_OFFERS)), rng.randint(1, 3)) for u in self.users]

        async def one(user: str, offer_id: str, quantity: int) -> None:
            headers = {**ctx.headers, "Idempotency-Key": f"demo-{user}"}
            first: tuple[int, Any] | None = None
            for _ in range(2):  # a client retry with the same key: replayed, never a second hold
                status, body = await ctx.call("POST", f"/v1/offers/{offer_id}/purchase",
                                              json={"user_id": user, "quantity": quantity},
                                              headers=headers)
                report.record(status, body)
                ctx.progress.advance()
                if first is None:
                    first = (status, body)
                elif status == 201 and first[0] == 201 and body != first[1]:
                    report.notes.append(f"replay differed for {user}")
            if first is not None and first[0] == 201:
                self.holds.append(first[1])

        await asyncio.gather(*(one(*p) for p in plan))
        # most buyers pay, some abandon the checkout, the rest leave it open
        pay_rng = random.Random(13)

        async def settle(hold: dict[str, Any]) -> None:
            roll = pay_rng.random()
            if roll < 0.1:
                return
            action = "complete" if roll < 0.85 else "expire"
            status, body = await ctx.call(
                "POST", f"/v1/sandbox/checkout/{hold['checkout_session_id']}/{action}", headers={})
            if status != 200 or body.get("webhook_status") != 200:
                report.notes.append(f"sandbox {action} failed: {status} {body}")

        await asyncio.gather(*(settle(h) for h in self.holds))
        report.notes.append(f"{len(self.holds)} holds; ~75% paid via sandbox webhooks, ~15% abandoned")

    async def verify(self, ctx: DemoContext, report: DomainReport) -> None:
        rt = ctx.runtime
        tenant = ctx.tenant_id
        all_equal = True
        sold_matches = True
        for offer_id, total in _OFFERS.items():
            state = await rt.offers.read(tenant, offer_id)
            report.oversell += max(0, state.reserved + state.sold - total)
            row = await rt.pool.fetchrow(
                """SELECT o.reserved, o.sold,
                          COALESCE(SUM(p.quantity) FILTER (WHERE p.status = 'paid'), 0) AS paid,
                          COALESCE(SUM(p.quantity) FILTER (WHERE p.status = 'pending'), 0) AS pending
                   FROM offers o LEFT JOIN offer_purchases p USING (tenant_id, offer_id)
                   WHERE o.tenant_id = $1 AND o.offer_id = $2 GROUP BY o.reserved, o.sold""",
                tenant, offer_id)
            all_equal &= row is not None and (row["sold"], row["reserved"]) == (state.sold, state.reserved)
            sold_matches &= row is not None and row["paid"] == state.sold and row["pending"] == state.reserved
        report.checks["sold == paid purchases"] = sold_matches
        report.checks["PostgreSQL rows == Redis"] = all_equal
