"""One tenant flooded, another's latency: tenant actors isolate tenants from each other.

    .venv/bin/python -m benchmarks.actors [--runs 3] [--quiet-requests 600] [--flood 384]

One ``dropgate serve`` process (persister inside). Each run measures, side by side:

- *quiet alone*: tenant Q sends payments from 8 concurrent callers, nobody else;
- *quiet under flood*: the same, while tenant F is flooded by ``--flood`` concurrent
  callers sending payments non-stop (F's mailbox holds up to 1,024 of them; past that
  F gets 503 TENANT_BUSY, Q never does).

Reported: Q's p50/p99 alone and under the flood, F's p50/p99 in the same seconds, and
the ratios. F's requests queue behind each other in F's actor; Q's do not queue
behind F's: what Q pays under the flood is the shared CPU of one server process.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from benchmarks.common import LoadResult, Stores, median, private_settings, run_load, server_process, stores

QUIET_CONCURRENCY = 8


async def _tenant(http: aiohttp.ClientSession, url: str, admin: dict[str, str], tenant_id: str) -> None:
    async with http.post(url + "/v1/tenants", json={"tenant_id": tenant_id, "name": tenant_id},
                         headers=admin) as r:
        assert r.status == 201, await r.text()


async def one_run(s: Stores, quiet_requests: int, flood: int, admission: int | None = None
                  ) -> dict[str, float]:
    overrides = {} if admission is None else {"tenant_admission": admission}
    async with private_settings(s, redis_max_connections=64, **overrides) as settings, \
            server_process(settings) as url:
        admin = {"Authorization": f"Bearer {settings.admin_key}"}
        connector = aiohttp.TCPConnector(limit=flood + QUIET_CONCURRENCY + 8)
        async with aiohttp.ClientSession(connector=connector) as http:
            for tenant_id in ("quiet", "flooded"):
                await _tenant(http, url, admin, tenant_id)

            async def pay(headers: dict[str, str], i: int) -> int:
                async with http.post(url + "/v1/payments", headers=headers,
                                     json={"amount": "1.00", "currency": "usd", "reference": f"r{i}"}) as r:
                    await r.read()
                    return r.status

            quiet_headers = {**admin, "X-Tenant-Id": "quiet"}
            flood_headers = {**admin, "X-Tenant-Id": "flooded"}

            async def quiet_load() -> LoadResult:
                result = await run_load(quiet_requests, QUIET_CONCURRENCY,
                                        lambda i: pay(quiet_headers, i))
                assert result.statuses == {201: quiet_requests}, result.statuses
                return result

            await run_load(200, QUIET_CONCURRENCY, lambda i: pay(quiet_headers, i))  # warm up
            alone = await quiet_load()

            stop = asyncio.Event()
            flood_latencies: list[float] = []
            flood_statuses: dict[int, int] = {}

            async def flooder(w: int) -> None:
                i = 0
                while not stop.is_set():
                    started = time.perf_counter()
                    status = await pay(flood_headers, w * 1_000_000 + i)
                    flood_latencies.append(time.perf_counter() - started)
                    flood_statuses[status] = flood_statuses.get(status, 0) + 1
                    i += 1

            flooders = [asyncio.create_task(flooder(w)) for w in range(flood)]
            await asyncio.sleep(1.0)  # let the flood fill F's mailbox first
            flood_latencies.clear()
            under = await quiet_load()
            stop.set()
            await asyncio.gather(*flooders)
        flooded = LoadResult(requests=len(flood_latencies), seconds=under.seconds,
                             latencies_s=flood_latencies, statuses=flood_statuses)
        return {
            "quiet_alone_p50": alone.percentile(0.5) * 1000,
            "quiet_alone_p99": alone.percentile(0.99) * 1000,
            "quiet_flood_p50": under.percentile(0.5) * 1000,
            "quiet_flood_p99": under.percentile(0.99) * 1000,
            "flooded_p50": flooded.percentile(0.5) * 1000,
            "flooded_p99": flooded.percentile(0.99) * 1000,
            "flooded_per_s": flooded.per_s,
            "flooded_busy": float(flood_statuses.get(503, 0)),
            "flooded_ok": float(flood_statuses.get(201, 0)),
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quiet-requests", type=int, default=600)
    parser.add_argument("--flood", type=int, default=384, help="concurrent callers of the flooded tenant")
    parser.add_argument("--tenant-admission", type=int, default=None,
                        help="DROPGATE_TENANT_ADMISSION of the server (default: the setting's default; "
                             "a large value, e.g. 100000, turns per-tenant admission off)")
    args = parser.parse_args()
    s = stores()
    runs = [await one_run(s, args.quiet_requests, args.flood, args.tenant_admission) for _ in range(args.runs)]

    def col(name: str) -> str:
        values = [r[name] for r in runs]
        return f"median {median(values):,.1f} (runs: {', '.join(f'{v:,.1f}' for v in values)})"

    print(f"tenant isolation: quiet tenant {QUIET_CONCURRENCY} callers x {args.quiet_requests} payments; "
          f"flooded tenant {args.flood} callers non-stop; tenant admission "
          f"{args.tenant_admission or 'default'}; {args.runs} runs")
    print(f"  quiet alone        p50 ms {col('quiet_alone_p50')}")
    print(f"  quiet alone        p99 ms {col('quiet_alone_p99')}")
    print(f"  quiet under flood  p50 ms {col('quiet_flood_p50')}")
    print(f"  quiet under flood  p99 ms {col('quiet_flood_p99')}")
    print(f"  flooded            p50 ms {col('flooded_p50')}")
    print(f"  flooded            p99 ms {col('flooded_p99')}")
    print(f"  flooded 201/s            {col('flooded_per_s')}")
    print(f"  flooded 503 TENANT_BUSY  {col('flooded_busy')} of {col('flooded_ok')} ok")
    q99 = median([r["quiet_flood_p99"] for r in runs])
    print(f"  quiet p99 under flood / alone: {q99 / median([r['quiet_alone_p99'] for r in runs]):.2f}")
    print(f"  flooded p99 / quiet p99 (same seconds): {median([r['flooded_p99'] for r in runs]) / q99:.1f}")
    if s.stack is not None:
        s.stack.close()


if __name__ == "__main__":
    asyncio.run(main())
