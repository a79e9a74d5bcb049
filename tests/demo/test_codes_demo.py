"""The demo's code pool domain, scaled down, against the test app."""

from __future__ import annotations

import aiohttp

from dropgate.demo.base import DemoContext, DomainReport
from dropgate.demo.codes import CodesDemo
from dropgate.persistence.persister import Persister
from dropgate.progressbar import ProgressBar
from dropgate.runtime import Runtime
from tests.conftest import ADMIN_KEY, Api


async def test_codes_demo_passes_its_checks(api: Api, runtime: Runtime, persister: Persister) -> None:
    async with aiohttp.ClientSession() as session:
        ctx = DemoContext(session=session, base_url=str(api.client.make_url("")).rstrip("/"),
                          tenant_id="acme", service_key=api.service_key, admin_key=ADMIN_KEY,
                          runtime=runtime, progress=ProgressBar(enabled=False), scale=0.1)
        demo = CodesDemo()
        report = DomainReport(domain=demo.name)
        await demo.setup(ctx)
        await demo.crowd(ctx, report)
        await persister.drain()
        await demo.verify(ctx, report)
    assert report.checks and all(report.checks.values()), report.checks
    assert report.oversell == 0
    assert ctx.progress.done == ctx.progress.total == 600
    assert report.requests > 300 and report.successes == report.requests
    assert demo.asked > demo.pool  # the crowd wanted more than there was
