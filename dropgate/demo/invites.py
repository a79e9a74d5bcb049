"""Invite codes in the demo: a crowd of users racing for a few limited codes."""

from __future__ import annotations

import asyncio
import random

from dropgate.demo.base import DemoContext, DemoDomain, DomainReport
from dropgate.ids import text

_CODES = {"LAUNCH-100": 100, "VIP-25": 25, "OPEN": 0}


class InvitesDemo(DemoDomain):
    name = "invites"

    async def setup(self, ctx: DemoContext) -> None:
        for code, max_uses in _CODES.items():
            status, body = await ctx.call("POST", "/v1/invites",
                                          json={"code": code, "max_uses": max_uses})
            if status not in (201, 409):
                raise RuntimeError(f"demo: creating invite {code} failed: {body}")
        self.users = [f"user{i}" for i in range(ctx.n(1500))]
        ctx.progress.add_total(2 * len(self.users))

    async def crowd(self, ctx: DemoContext, report: DomainReport) -> None:
        rng = random.Random(7)

        async def one(user: str) -> None:
            code = rng.choice(list(_CODES))
            for _ in range(2):  # everyone tries twice: the second is ALREADY_USED at best
                status, body = await ctx.call("POST", f"/v1/invites/{code}/redeem",
                                              json={"user_id": user})
                report.record(status, body)
                ctx.progress.advance()

        await asyncio.gather(*(one(u) for u in self.users))

    async def verify(self, ctx: DemoContext, report: DomainReport) -> None:
        rt = ctx.runtime
        all_equal = True
        for code, max_uses in _CODES.items():
            state = await rt.invites.get(ctx.tenant_id, code)
            users = {text(u) for u in await rt.redis.smembers(
                rt.keys.tenant(ctx.tenant_id).invite_users(code))}
            rows = {r["user_id"] for r in await rt.pool.fetch(
                "SELECT user_id FROM invite_code_uses WHERE tenant_id = $1 AND code = $2",
                ctx.tenant_id, code)}
            pg_count = await rt.pool.fetchval(
                "SELECT used_count FROM invite_codes WHERE tenant_id = $1 AND code = $2",
                ctx.tenant_id, code)
            if max_uses and state.used_count > max_uses:
                report.oversell += state.used_count - max_uses
            all_equal &= users == rows and pg_count == state.used_count == len(users)
        report.checks["PostgreSQL rows == Redis"] = all_equal
