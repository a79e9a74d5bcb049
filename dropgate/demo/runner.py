"""Runs the demo: the stack, a tenant, every domain's crowd at once, a summary table."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time

import aiohttp
import msgspec

from dropgate.demo.base import DemoContext, DemoDomain, DomainReport
from dropgate.demo.domains import DOMAINS
from dropgate.demo.webhooks import DemoReceiver, wait_delivered
from dropgate.http.app import serving
from dropgate.progressbar import ProgressBar
from dropgate.runtime import open_runtime
from dropgate.settings import Settings
from dropgate.workers import wait_for_signal


def format_summary(reports: list[DomainReport], elapsed_s: float,
                   receiver: DemoReceiver | None = None) -> str:
    header = ("domain", "requests", "ok", "refusals by code", "oversell", "PostgreSQL == Redis")
    rows = []
    for r in reports:
        refusals = ", ".join(f"{code} {n}" for code, n in r.refusals.most_common()) or "-"
        checks = all(r.checks.values()) if r.checks else False
        rows.append((r.domain, str(r.requests), str(r.successes), refusals, str(r.oversell),
                     "yes" if checks else "NO"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    total = sum(r.requests for r in reports)
    out.append(f"{total} requests in {elapsed_s:.1f}s ({total / max(elapsed_s, 1e-6):,.0f}/s)")
    for r in reports:
        for name, ok in r.checks.items():
            out.append(f"  [{'ok' if ok else 'FAILED'}] {r.domain}: {name}")
        out += [f"  note {r.domain}: {n}" for n in r.notes]
    if receiver is not None:
        out.append(receiver.summary())
    return "\n".join(out)


async def run_demo(settings: Settings, *, exit_after: bool, scale: float = 1.0,
                   domains: list[type[DemoDomain]] | None = None) -> int:
    admin_key = settings.admin_key or "dg_admin_" + secrets.token_hex(12)
    # the demo pays on the sandbox's checkout pages: it chooses the sandbox itself; and its
    # webhook receiver listens on 127.0.0.1, which only DROPGATE_WEBHOOK_ALLOW_PRIVATE permits
    settings = msgspec.structs.replace(settings, admin_key=admin_key, payment_provider="sandbox",
                                       webhook_allow_private=True)
    receiver = DemoReceiver()
    await receiver.start()
    try:
        return await _run(settings, admin_key, receiver, exit_after=exit_after, scale=scale,
                          domains=domains)
    finally:
        await receiver.close()


async def _run(settings: Settings, admin_key: str, receiver: DemoReceiver, *, exit_after: bool,
               scale: float, domains: list[type[DemoDomain]] | None) -> int:
    async with open_runtime(settings, run_persister=True, run_dispatcher=True) as runtime:
        async with serving(runtime, settings.host, settings.port) as url:
            tenant_id = f"demo-{int(time.time())}"
            await runtime.tenants.create(tenant_id, name="Demo tenant", status="active", trial_end_ms=None)
            _, service_key = await runtime.api_keys.create(role="service", tenant_id=tenant_id)
            print(f"dropgate demo\n  API:         {url}  (OpenAPI at {url}/openapi.json)\n"
                  f"  admin key:   {admin_key}\n  tenant:      {tenant_id}\n"
                  f"  service key: {service_key}\n  Redis:       {runtime.redis_url}\n"
                  f"  PostgreSQL:  {runtime.database_url}\n"
                  "  payments:    sandbox (nothing is charged)\n"
                  f"  webhooks:    {receiver.url} (every event type)", flush=True)
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as session:
                progress = ProgressBar(unit=" requests")
                ctx = DemoContext(session=session, base_url=url, tenant_id=tenant_id,
                                  service_key=service_key, admin_key=admin_key, runtime=runtime,
                                  progress=progress, scale=scale)
                await receiver.register(ctx.call)
                plugins = [d() for d in (domains or DOMAINS)]
                reports = [DomainReport(domain=p.name) for p in plugins]
                for plugin in plugins:
                    await plugin.setup(ctx)
                started = time.monotonic()
                progress.stage("  crowd", progress.total)  # the total the domains' setups added
                try:
                    await asyncio.gather(*(p.crowd(ctx, r) for p, r in zip(plugins, reports, strict=True)))
                finally:
                    progress.finish()
                elapsed = time.monotonic() - started
                print("  waiting for the persister to drain ...", file=sys.stderr, flush=True)
                assert runtime.persister is not None
                await _wait_drained(runtime.persister)
                assert runtime.dispatcher is not None
                await wait_delivered(runtime.dispatcher)
                for plugin, report in zip(plugins, reports, strict=True):
                    await plugin.verify(ctx, report)
            print(format_summary(reports, elapsed, receiver), flush=True)
            ok = all(r.oversell == 0 and r.checks and all(r.checks.values()) for r in reports)
            ok = ok and receiver.bad_signatures == 0
            if not exit_after:
                print(f"serving on {url} until Ctrl-C", flush=True)
                await wait_for_signal()
    return 0 if ok else 1


async def _wait_drained(persister: object, timeout_s: float = 120.0) -> None:
    from dropgate.persistence.persister import Persister

    assert isinstance(persister, Persister)
    deadline = time.monotonic() + timeout_s
    while sum((await persister.lag()).values()) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the persister did not drain")
        await asyncio.sleep(0.05)

