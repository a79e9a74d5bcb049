"""Lists (issue #17): keyset pages through a real ``dropgate serve``.

    .venv/bin/python -m benchmarks.lists [--offers 10000] [--listers 100] [--codes 1000000]

1. ``--listers`` clients at once each walk every page of ``GET /v1/offers?limit=100``
   over ``--offers`` offers (10,000: 100 pages each, 10,000 pages in all).
2. One client walks ``GET /v1/campaigns/{id}/codes?limit=1000`` over ``--codes`` codes
   (1,000 pages), timing each page: the last pages must cost what the first do.

Rows are written straight into PostgreSQL (lists read only PostgreSQL); pages/s and
the p50/p99 of one page's latency are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import asyncpg

from benchmarks.common import LoadResult, private_settings, server_process, stores


async def _seed(database_url: str, schema: str, offers: int, codes: int) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency, "
            "inventory_total, max_per_order, active, created_at, version) "
            "SELECT 'bench', 'o' || i, 'e' || (i % 100), 'n', 100, 'usd', 10, 1, true, "
            "now() - i * interval '1 ms', 1 FROM generate_series(1, $1::int) i", offers)
        await conn.execute(
            "INSERT INTO campaign_codes (tenant_id, campaign_id, type, code, uploaded_at, version) "
            "SELECT 'bench', 'huge', 'tm', 'CODE' || lpad(i::text, 8, '0'), now(), 1 "
            "FROM generate_series(1, $1::int) i", codes)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _walk(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                latencies: list[float]) -> int:
    items = 0
    cursor: str | None = None
    while True:
        started = time.perf_counter()
        async with session.get(url + (f"&cursor={cursor}" if cursor else ""), headers=headers) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        latencies.append(time.perf_counter() - started)
        items += len(page["data"])
        if not page["has_more"]:
            return items
        cursor = page["next_cursor"]


def _report(name: str, result: LoadResult, items: int) -> None:
    print(f"{name}: {result.requests:,} pages ({items:,} items) in {result.seconds:.1f} s = "
          f"{result.per_s:,.0f} pages/s; page p50 {result.percentile(0.5) * 1000:.1f} ms, "
          f"p99 {result.percentile(0.99) * 1000:.1f} ms", flush=True)


async def main(offers: int, listers: int, codes: int) -> None:
    s = stores()
    async with private_settings(s) as settings, server_process(settings) as url:
        admin = {"Authorization": f"Bearer {settings.admin_key}"}
        connector = aiohttp.TCPConnector(limit=listers)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"{url}/v1/tenants", headers=admin,
                                    json={"tenant_id": "bench", "name": "bench"}) as r:
                assert r.status == 201, await r.text()
            async with session.post(f"{url}/v1/keys", headers=admin,
                                    json={"role": "service", "tenant_id": "bench", "name": "b"}) as r:
                assert r.status == 201, await r.text()
                svc = {"Authorization": f"Bearer {(await r.json())['key']}"}
            async with session.post(f"{url}/v1/campaigns", headers=svc,
                                    json={"campaign_id": "huge", "types": ["tm"]}) as r:
                assert r.status == 201, await r.text()
            started = time.perf_counter()
            assert settings.database_schema is not None
            await _seed(settings.database_url, settings.database_schema, offers, codes)
            print(f"seeded {offers:,} offers and {codes:,} codes in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)

            latencies: list[float] = []
            started = time.perf_counter()
            counts = await asyncio.gather(*(_walk(session, f"{url}/v1/offers?limit=100", svc, latencies)
                                            for _ in range(listers)))
            result = LoadResult(requests=len(latencies), seconds=time.perf_counter() - started,
                                latencies_s=latencies)
            assert all(c == offers for c in counts), counts
            _report(f"offers, {listers} concurrent listers", result, sum(counts))

            latencies = []
            started = time.perf_counter()
            n = await _walk(session, f"{url}/v1/campaigns/huge/codes?limit=1000", svc, latencies)
            result = LoadResult(requests=len(latencies), seconds=time.perf_counter() - started,
                                latencies_s=latencies)
            assert n == codes, n
            _report("codes, one walker", result, n)
            tenth = max(1, len(latencies) // 10)
            first, last = latencies[:tenth], latencies[-tenth:]
            print(f"codes: first tenth of pages mean {sum(first) / len(first) * 1000:.1f} ms, "
                  f"last tenth mean {sum(last) / len(last) * 1000:.1f} ms", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--listers", type=int, default=100)
    parser.add_argument("--codes", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.offers, args.listers, args.codes))
