"""The promos demo domain end to end at a small scale: crowd, drain, every check holds."""

from __future__ import annotations

import aiohttp

from dropgate.demo.base import DemoContext, DomainReport
from dropgate.demo.promos import PromosDemo
from dropgate.persistence.persister import Persister
from dropgate.progressbar import ProgressBar
from dropgate.runtime import Runtime
from tests.conftest import ADMIN_KEY, Api


async def test_promos_demo_small(api: Api, runtime: Runtime, persister: Persister) -> None:
    async with aiohttp.ClientSession() as session:
        ctx = DemoContext(session=session, base_url=str(api.client.make_url("")).rstrip("/"),
                          tenant_id="acme", service_key=api.service_key, admin_key=ADMIN_KEY,
                          runtime=runtime, progress=ProgressBar(enabled=False), scale=0.2)
        demo, report = PromosDemo(), DomainReport(domain="promos")
        await demo.setup(ctx)
        await demo.crowd(ctx, report)
        await persister.drain()
        await demo.verify(ctx, report)
    assert report.successes > 100 and report.requests >= 2 * len(demo.customers)
    assert report.refusals["CUSTOMER_LIMIT"] > 0 and report.refusals["EXHAUSTED"] > 0
    assert report.refusals["NOT_FOUND"] > 0  # the retried rollbacks
    assert report.oversell == 0
    assert report.checks and all(report.checks.values()), report.checks
    assert ctx.progress.done == ctx.progress.total
