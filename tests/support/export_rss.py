"""Export a big campaign through a real ``dropgate serve`` and watch the server's RSS.

Used by tests/http/test_codes_export_rss.py (1,000,000 codes): the codes are written
straight into PostgreSQL (the export reads only PostgreSQL), the server runs as a
subprocess, and its ``VmRSS`` (/proc/<pid>/status) is sampled every 20 ms while a
client streams the CSV.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from dropgate.settings import Settings
from tests.support.hostile import Serve
from tests.support.seed import seed_tenant

SAMPLE_S = 0.02


@dataclass
class ExportRun:
    codes: int  # rows of the CSV, header excluded
    bytes: int
    seconds: float
    rss_before_kb: int
    rss_peak_kb: int

    @property
    def growth_mb(self) -> float:
        return (self.rss_peak_kb - self.rss_before_kb) / 1024


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def seed(pool: asyncpg.Pool, tenant_id: str, campaign_id: str, n: int) -> None:
    """``n`` available codes of type tm, straight into PostgreSQL (one statement)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO campaign_codes (tenant_id, campaign_id, type, code, uploaded_at, version) "
            "SELECT $1, $2, 'tm', 'CODE' || lpad(i::text, 8, '0'), now(), 1 "
            "FROM generate_series(1, $3::int) i", tenant_id, campaign_id, n)
        await conn.execute("ANALYZE campaign_codes")


async def _export(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, int]:
    lines = size = 0
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=600)) as r:
        assert r.status == 200, await r.text()
        async for chunk in r.content.iter_chunked(256 * 1024):
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines - 1, size


async def run_export(settings: Settings, pool: asyncpg.Pool, n: int, log: Path) -> ExportRun:
    """Start ``dropgate serve``, make a campaign of ``n`` codes, export it once to warm up
    (a small filter), then export all of it while sampling the server's RSS."""
    serve = Serve(settings, log)
    proc, base = serve.proc, serve.url
    try:
        serve.wait_serving()
        async with aiohttp.ClientSession() as session:
            service = await seed_tenant(session, base, tenant_id="big")
            async with session.post(f"{base}/v1/campaigns", headers=service,
                                    json={"campaign_id": "huge", "types": ["tm"]}) as r:
                assert r.status == 201, await r.text()
            await seed(pool, "big", "huge", n)
            url = f"{base}/v1/campaigns/huge/codes/export"
            # warm-up: the route, the pool and the COPY path are loaded once, not measured
            await _export(session, f"{url}?status=assigned", service)
            before = rss_kb(proc.pid)
            peak = before
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_kb(proc.pid))
                    await asyncio.sleep(SAMPLE_S)

            sampler = asyncio.create_task(sample())
            started = time.perf_counter()
            try:
                codes, size = await _export(session, url, service)
            finally:
                done.set()
                await sampler
            seconds = time.perf_counter() - started
            peak = max(peak, rss_kb(proc.pid))
        return ExportRun(codes=codes, bytes=size, seconds=seconds, rss_before_kb=before,
                         rss_peak_kb=peak)
    finally:
        serve.stop()
