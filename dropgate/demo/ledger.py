"""Tenant operations in the demo: payments, four-eyes withdrawals, orders and a slot rush
on one tenant; a payment flood cut by a suspension on another.

Both tenants are the demo's own (created here), so the suspension touches no other
domain's crowd.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from dropgate.demo.base import DemoContext, DemoDomain, DomainReport
from dropgate.ids import dt_to_ms, text

_SLOT = {"resource_id": "court-1", "slot_start": "2031-06-01T09:00:00Z",
         "slot_end": "2031-06-01T10:00:00Z"}
_CAPACITY = 20


def _iso_ms(value: str) -> int:
    ms = dt_to_ms(datetime.fromisoformat(value))
    assert ms is not None
    return ms


class LedgerDemo(DemoDomain):
    name = "tenant ops"

    async def setup(self, ctx: DemoContext) -> None:
        self.shop = f"{ctx.tenant_id}-shop"
        self.lapsing = f"{ctx.tenant_id}-lapsing"
        self.keys = {t: await self._tenant(ctx, t) for t in (self.shop, self.lapsing)}
        self.manager = await self._key(ctx, self.shop, "manager")  # the second pair of eyes
        self.payments = ctx.n(600)
        self.bookings = ctx.n(500)
        self.withdrawals = ctx.n(150)
        self.orders = ctx.n(200)
        self.flood = ctx.n(600)
        ctx.progress.add_total(self.payments + self.bookings + 2 * self.withdrawals + self.orders
                               + self.flood + 1)
        self.succeeded_flood = 0
        self.refused_after_suspension = 0

    @staticmethod
    async def _tenant(ctx: DemoContext, tenant_id: str) -> dict[str, str]:
        admin = {"Authorization": f"Bearer {ctx.admin_key}"}
        status, body = await ctx.call("POST", "/v1/tenants", headers=admin,
                                      json={"tenant_id": tenant_id, "name": tenant_id})
        if status != 201:
            raise RuntimeError(f"demo: creating tenant {tenant_id} failed: {body}")
        return await LedgerDemo._key(ctx, tenant_id, "clerk")

    @staticmethod
    async def _key(ctx: DemoContext, tenant_id: str, name: str) -> dict[str, str]:
        admin = {"Authorization": f"Bearer {ctx.admin_key}"}
        status, key = await ctx.call("POST", "/v1/keys", headers=admin,
                                     json={"role": "service", "tenant_id": tenant_id, "name": name})
        if status != 201:
            raise RuntimeError(f"demo: creating a key for {tenant_id} failed: {key}")
        return {"Authorization": f"Bearer {key['key']}"}

    async def _send(self, ctx: DemoContext, report: DomainReport, tenant_id: str, path: str,
                    body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, answer = await ctx.call("POST", path, json=body, headers=headers or self.keys[tenant_id])
        report.record(status, answer)
        ctx.progress.advance()
        return status, answer

    async def crowd(self, ctx: DemoContext, report: DomainReport) -> None:
        await asyncio.gather(self._shop(ctx, report), self._lapsing(ctx, report))

    async def _shop(self, ctx: DemoContext, report: DomainReport) -> None:
        shop = self.shop

        async def pay(i: int) -> None:
            await self._send(ctx, report, shop, "/v1/payments",
                             {"amount": f"{10 + i % 7}.{i % 100:02d}", "currency": "usd",
                              "reference": f"inv-{i}"})

        async def book(i: int) -> None:
            await self._send(ctx, report, shop, "/v1/bookings",
                             {**_SLOT, "capacity": _CAPACITY, "user_id": f"player{i}"})

        async def order(i: int) -> None:  # every 4th order id is sent twice: ALREADY_EXISTS
            await self._send(ctx, report, shop, "/v1/orders",
                             {"order_id": f"ord-{i - i % 2 if i % 4 < 2 else i}",
                              "items": [{"sku": "ball", "quantity": 1 + i % 3}],
                              "total": "19.90", "currency": "usd"})

        async def withdraw(i: int) -> None:
            status, w = await self._send(ctx, report, shop, "/v1/withdrawals",
                                         {"amount": "150.00", "currency": "usd",
                                          "initiated_by": f"clerk{i % 5}"})
            if status != 201:
                ctx.progress.advance()
                return
            # some try four eyes of one: the clerk's own key, whatever the label says
            approver = self.keys[shop] if i % 10 == 0 else self.manager
            await self._send(ctx, report, shop, f"/v1/withdrawals/{w['withdrawal_id']}/approve",
                             {"approved_by": "manager"}, approver)

        await asyncio.gather(*(pay(i) for i in range(self.payments)),
                             *(book(i) for i in range(self.bookings)),
                             *(order(i) for i in range(self.orders)),
                             *(withdraw(i) for i in range(self.withdrawals)))

    async def _lapsing(self, ctx: DemoContext, report: DomainReport) -> None:
        answered = 0
        cut = asyncio.Event()
        suspended = False

        async def pay(i: int) -> None:
            nonlocal answered
            status, _ = await self._send(ctx, report, self.lapsing, "/v1/payments",
                                         {"amount": "5.00", "currency": "eur", "reference": f"p{i}"})
            answered += 1
            if status == 201:
                self.succeeded_flood += 1
            elif suspended:
                self.refused_after_suspension += 1
            if answered == self.flood * 2 // 5:
                cut.set()

        async def suspend() -> None:
            nonlocal suspended
            await cut.wait()
            admin = {"Authorization": f"Bearer {ctx.admin_key}"}
            status, body = await ctx.call("PUT", f"/v1/tenants/{self.lapsing}/subscription",
                                          headers=admin, json={"subscription_status": "suspended"})
            suspended = status == 200
            report.record(status, body)
            ctx.progress.advance()

        await asyncio.gather(*(pay(i) for i in range(self.flood)), suspend())

    async def verify(self, ctx: DemoContext, report: DomainReport) -> None:
        rt = ctx.runtime
        balances_agree = True
        for tenant_id in (self.shop, self.lapsing):
            raw = await rt.redis.hgetall(rt.keys.tenant(tenant_id).tenant())
            redis_bal = {text(k)[4:]: int(v) for k, v in raw.items() if text(k).startswith("bal:")}
            rows = {r["currency"]: r["balance_minor"] for r in await rt.pool.fetch(
                "SELECT currency, balance_minor FROM tenant_balances_from_rows WHERE tenant_id = $1",
                tenant_id)}
            kept = {r["currency"]: r["balance_minor"] for r in await rt.pool.fetch(
                "SELECT currency, balance_minor FROM tenant_balances WHERE tenant_id = $1", tenant_id)}
            balances_agree &= redis_bal == rows == kept
            report.oversell += sum(-v for v in redis_bal.values() if v < 0)  # an overdraft
        report.checks["balances: Redis == PostgreSQL rows, never negative"] = balances_agree

        slot = rt.keys.tenant(self.shop).booking_slot(
            "court-1", _iso_ms(_SLOT["slot_start"]), _iso_ms(_SLOT["slot_end"]))
        booked = int(text(await rt.redis.hget(slot, "booked") or b"0"))
        rows = await rt.pool.fetchval(
            "SELECT count(*) FROM bookings WHERE tenant_id = $1 AND resource_id = 'court-1'", self.shop)
        report.oversell += max(0, booked - _CAPACITY)
        report.checks["bookings: slot rows == Redis count"] = rows == booked

        flood_rows = await rt.pool.fetchval("SELECT count(*) FROM payments WHERE tenant_id = $1",
                                            self.lapsing)
        report.checks["suspension: the payments that succeeded are exactly the rows"] = (
            flood_rows == self.succeeded_flood)
        report.notes.append(
            f"{self.succeeded_flood} of {self.flood} payments of {self.lapsing} went through before "
            f"its suspension; {self.refused_after_suspension} answered after it were refused")
