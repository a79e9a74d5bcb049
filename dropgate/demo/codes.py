"""Campaign code pools in the demo: a launch where more fans arrive than there are codes.

Setup uploads two pools (``tm`` and ``external``) as streamed CSV bodies. The crowd:
every fan reserves 1-5 ``tm`` codes at once (demand exceeds the pool, so late fans
get fewer or none), then most assign what they got and the rest release it.
Verify: no code handed out twice, handed out + left = pool, and PostgreSQL's rows
agree with Redis code by code and in the counts.
"""

from __future__ import annotations

import asyncio
import collections
import random
import uuid

from dropgate.demo.base import DemoContext, DemoDomain, DomainReport
from dropgate.ids import text
from dropgate.specs.coderecord import parse_record


class CodesDemo(DemoDomain):
    name = "codes"

    async def setup(self, ctx: DemoContext) -> None:
        self.campaign = "launch-" + uuid.uuid4().hex[:8]
        self.pool = ctx.n(6_000)
        self.fans = ctx.n(3_000)
        csv_headers = {**ctx.headers, "Content-Type": "text/csv"}
        for type, size in (("tm", self.pool), ("external", ctx.n(2_000))):
            body = "".join(f"{type.upper()}-{i:07d}\n" for i in range(size)).encode()
            status, answer = await ctx.call("POST", f"/v1/campaigns/{self.campaign}/codes?type={type}",
                                            data=body, headers=csv_headers)
            if status != 200 or answer["inserted"] != size:
                raise RuntimeError(f"demo: uploading {type} codes failed: {answer}")
        self.handed: collections.Counter[str] = collections.Counter()
        self.assigned: collections.Counter[str] = collections.Counter()
        self.released: collections.Counter[str] = collections.Counter()
        ctx.progress.add_total(2 * self.fans)

    async def crowd(self, ctx: DemoContext, report: DomainReport) -> None:
        rng = random.Random(11)
        wants = [rng.randint(1, 5) for _ in range(self.fans)]
        completes = [rng.random() < 0.8 for _ in range(self.fans)]
        self.asked = sum(wants)
        base = f"/v1/campaigns/{self.campaign}"

        async def fan(want: int, complete: bool) -> None:
            status, body = await ctx.call("POST", f"{base}/reservations",
                                          json={"type": "tm", "count": want})
            report.record(status, body)
            ctx.progress.advance()
            codes = body.get("codes", []) if status == 200 else []
            self.handed.update(codes)
            if not codes:
                ctx.progress.advance()
                return
            step = "assign" if complete else "release"
            status, result = await ctx.call("POST", f"{base}/{step}",
                                            json={"codes": codes, "reserve_id": body["reserve_id"]})
            report.record(status, result)
            ctx.progress.advance()
            if status == 200 and result["updated"] == len(codes):
                (self.assigned if complete else self.released).update(codes)

        await asyncio.gather(*(fan(w, c) for w, c in zip(wants, completes, strict=True)))

    async def verify(self, ctx: DemoContext, report: DomainReport) -> None:
        rt = ctx.runtime
        tenant, campaign = ctx.tenant_id, self.campaign
        # A released code goes out again, so a code may be handed out more than once,
        # but never held by two fans at once, and never assigned twice.
        held_twice = sum(1 for c, n in self.handed.items() if n - self.released[c] > 1)
        report.oversell = held_twice + sum(n - 1 for n in self.assigned.values() if n > 1)
        counts = await rt.codes.count(tenant, campaign, "tm")
        row = await rt.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE status = 'available'
                                         OR (status = 'reserved' AND expires_at <= now())) AS available,
                      count(*) FILTER (WHERE status = 'reserved' AND expires_at > now()) AS reserved,
                      count(*) FILTER (WHERE status = 'assigned') AS assigned
                 FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2 AND type = 'tm'""",
            tenant, campaign)
        pg_counts = (row["available"], row["reserved"], row["assigned"]) if row else None
        raw = await rt.redis.hgetall(rt.keys.tenant(tenant).codes_records(campaign))
        redis_rows = {text(code): parse_record(text(record))[:3] for code, record in raw.items()}
        pg_rows = {r["code"]: (r["type"], r["status"], r["reserve_id"]) for r in await rt.pool.fetch(
            "SELECT code, type, status, reserve_id FROM campaign_codes"
            " WHERE tenant_id = $1 AND campaign_id = $2", tenant, campaign)}
        assigned = sum(self.assigned.values())
        report.checks["no code held twice or assigned twice"] = report.oversell == 0
        report.checks["assigned + left == pool"] = (
            counts.assigned == assigned and counts.reserved == 0
            and counts.available + counts.assigned == self.pool)
        report.checks["PostgreSQL rows == Redis"] = pg_rows == redis_rows and pg_counts == (
            counts.available, counts.reserved, counts.assigned)
        report.notes.append(
            f"{self.pool:,} tm codes, {self.asked:,} asked by {self.fans:,} fans: "
            f"{sum(self.handed.values()):,} handed out, {assigned:,} assigned, "
            f"{sum(self.released.values()):,} released")
