"""Campaign code pools: 1M-code upload and reservation throughput, side by side in one run.

    .venv/bin/python -m benchmarks.codes [--runs 3] [--codes 1000000] [--callers 512] [--seconds 3]

Upload: a 1,000,000-line text/csv body streamed to ``POST /v1/campaigns/{c}/codes``
on ``dropgate serve`` in its own process on 127.0.0.1 (a fresh key prefix and schema
per run), in two layouts alternating within each run: ``separate`` (``serve
--no-persister`` plus ``dropgate persister`` in a third process, how a drop deploys
it) and ``inline`` (the persister inside the API process). Reported: seconds from
the request to its answer (every code is then reservable: the answer comes after the
last batch's script) and until the persister has committed every event (then all
1,000,000 rows are checked to be in ``campaign_codes``).

Reservations (one code each) with ``--callers`` concurrent callers, alternating in
the same run on the same machine:

- ``lua``: ``Codes.reserve`` straight to Redis (the reserve script), persister running;
- ``pg_skip_locked``: the usual SQL design, one statement per claim on an indexed
  table holding the same number of codes:
  ``WITH picked AS (SELECT id ... WHERE status = 'available' LIMIT n FOR UPDATE SKIP
  LOCKED) UPDATE ... RETURNING code`` on an asyncpg pool of 20 connections;
- ``http`` and ``http_pg``: both through the same aiohttp server (client in the same
  process), ``POST /v1/campaigns/{c}/reservations`` vs a benchmark-only route running
  the SQL claim.

Servers: ``DROPGATE_REDIS_URL`` / ``DROPGATE_DATABASE_URL`` when set, else the
embedded ones under ``DROPGATE_DATA_DIR``. Everything lives under private key
prefixes and schemas, deleted afterwards. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
from aiohttp import web

from benchmarks.common import Stores, private_settings, server_process, settings_env
from dropgate.embedded import EmbeddedStack, Endpoints
from dropgate.engine.keyspace import delete_prefix
from dropgate.http.app import create_app
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings, from_env

TENANT = "bench"
_SQL_CLAIM = """
WITH picked AS (
    SELECT id FROM sql_pool
     WHERE campaign_id = $1 AND type = $2 AND status = 'available'
     LIMIT $3 FOR UPDATE SKIP LOCKED)
UPDATE sql_pool AS p
   SET status = 'reserved', reserve_id = $4, reserved_at = now(),
       expires_at = now() + interval '24 hours'
  FROM picked WHERE p.id = picked.id
RETURNING p.code"""


@asynccontextmanager
async def stack(endpoints: Endpoints, admin: str, callers: int,
                extra_routes: Callable[[web.Application], None] | None = None,
                ) -> AsyncIterator[tuple[Runtime, str, str]]:
    """A fresh prefix + schema, a runtime with its persister running, a server on loopback."""
    isolation = "bench" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(endpoints.database_url)
    await conn.execute(f'CREATE SCHEMA "{isolation}"')
    await conn.close()
    settings = from_env(
        os.environ, redis_url=endpoints.redis_url, database_url=endpoints.database_url,
        key_prefix=isolation, database_schema=isolation, admin_key=admin,
        redis_max_connections=min(callers, 256) + 8, persister_block_ms=50,
        max_backlog=10_000_000)
    try:
        async with open_runtime(settings, run_persister=True) as rt:
            await rt.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
            app = create_app(rt)
            if extra_routes is not None:
                extra_routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                yield rt, f"http://127.0.0.1:{runner.addresses[0][1]}", isolation
            finally:
                await runner.cleanup()
                if rt.persister is not None and rt.persister_task is not None:
                    await rt.persister.close()  # before the keys go
                    await rt.persister_task
                await delete_prefix(rt.redis, isolation)
    finally:
        conn = await asyncpg.connect(endpoints.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{isolation}" CASCADE')
        await conn.close()


# -- upload ---------------------------------------------------------------------------
LAYOUTS = {
    # how a drop deploys it: the API and the persister each in its own process
    "separate": ("--no-persister",),
    # `dropgate serve` alone: the persister shares the API process (and its one core)
    "inline": (),
}


@asynccontextmanager
async def persister_process(settings: Settings, run: bool) -> AsyncIterator[None]:
    """``dropgate persister`` in its own process while the block runs (when ``run``)."""
    if not run:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-m", "dropgate", "persister"],
                            env=settings_env(settings), stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def upload_run(s: Stores, n: int, layout: str) -> dict[str, float]:
    """One upload of ``n`` codes to a server in its own process; seconds to answer and to persisted."""
    body = b"".join(b"CODE-%09d\n" % i for i in range(n))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 256 * 1024):
            yield body[i:i + 256 * 1024]

    async with private_settings(s, persister_block_ms=50, max_backlog=10_000_000) as settings, \
            open_runtime(settings, run_persister=False) as rt:
        await rt.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
        headers = {"Authorization": f"Bearer {settings.admin_key}", "X-Tenant-Id": TENANT,
                   "Content-Type": "text/csv"}
        async with server_process(settings, *LAYOUTS[layout]) as url, \
                persister_process(settings, layout == "separate"), aiohttp.ClientSession() as session:
            started = time.perf_counter()
            async with session.post(f"{url}/v1/campaigns/big/codes?type=tm", data=chunks(),
                                    headers=headers, timeout=aiohttp.ClientTimeout(total=300)) as r:
                answer = await r.json()
            reservable = time.perf_counter() - started
            assert r.status == 200 and answer["inserted"] == n, answer
            # the log keeps only what the persister has not committed yet
            while sum((await rt.new_persister().lag()).values()) > 0:
                await asyncio.sleep(0.05)
            persisted = time.perf_counter() - started
        assert (await rt.codes.count(TENANT, "big", "tm")).available == n
        assert await rt.pool.fetchval("SELECT count(*) FROM campaign_codes") == n
    return {"reservable_s": reservable, "persisted_s": persisted}


# -- reservations -------------------------------------------------------------------
async def for_seconds(seconds: float, callers: int, op: Callable[[], Awaitable[int]]) -> float:
    """`callers` workers call op until the deadline; reservations (op's answer summed) per second."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = await op()  # (not `done += await op()`: that reads `done` before awaiting)
            done += n

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(callers)))
    return done / (time.perf_counter() - started)


async def reservation_runs(endpoints: Endpoints, admin: str, runs: int, callers: int,
                           seconds: float, pool_size: int) -> list[dict[str, float]]:
    sql_pool: list[asyncpg.Pool] = []

    async def sql_rows(campaign: str) -> list[asyncpg.Record]:
        return list(await sql_pool[0].fetch(_SQL_CLAIM, campaign, "tm", 1, uuid.uuid4().hex))

    async def sql_claim(campaign: str) -> int:
        return len(await sql_rows(campaign))

    async def http_pg(request: web.Request) -> web.Response:
        rows = await sql_rows("http")
        return web.json_response({"codes": [r["code"] for r in rows]})

    def add_route(app: web.Application) -> None:
        app.router.add_post("/bench/sql-reservations", http_pg)

    results: list[dict[str, float]] = []
    async with stack(endpoints, admin, callers, add_route) as (rt, url, isolation):
        codes = [f"C{i:08d}" for i in range(pool_size)]
        for campaign in ("lua", "http"):
            for i in range(0, pool_size, 10_000):
                await rt.codes.upload_batch(TENANT, campaign, "tm", codes[i:i + 10_000])
        sql_pool.append(await asyncpg.create_pool(
            rt.database_url, min_size=20, max_size=20,
            server_settings={"search_path": isolation}))
        try:
            async with sql_pool[0].acquire() as conn:
                await conn.execute(
                    """CREATE TABLE sql_pool (
                           id bigserial PRIMARY KEY, campaign_id text NOT NULL, type text NOT NULL,
                           code text NOT NULL, status text NOT NULL DEFAULT 'available',
                           reserve_id text, reserved_at timestamptz, expires_at timestamptz,
                           UNIQUE (campaign_id, code))""")
                for campaign in ("pg", "http"):
                    await conn.copy_records_to_table(
                        "sql_pool", records=[(campaign, "tm", c) for c in codes],
                        columns=["campaign_id", "type", "code"])
                await conn.execute(
                    "CREATE INDEX sql_pool_claim ON sql_pool (campaign_id, type, status)")
                await conn.execute("ANALYZE sql_pool")
            assert (await rt.codes.count(TENANT, "lua", "tm")).available == pool_size
            headers = {"Authorization": f"Bearer {admin}", "X-Tenant-Id": TENANT}
            connector = aiohttp.TCPConnector(limit=callers)
            async with aiohttp.ClientSession(connector=connector) as session:
                async def http_redis() -> int:
                    async with session.post(f"{url}/v1/campaigns/http/reservations", headers=headers,
                                            json={"type": "tm", "count": 1}) as r:
                        return len((await r.json())["codes"])

                async def http_sql() -> int:
                    async with session.post(f"{url}/bench/sql-reservations") as r:
                        return len((await r.json())["codes"])

                async def lua() -> int:
                    return len((await rt.codes.reserve(TENANT, "lua", "tm", 1)).codes)

                for run in range(runs):
                    result = {
                        "lua": await for_seconds(seconds, callers, lua),
                        "pg_skip_locked": await for_seconds(seconds, callers,
                                                            lambda: sql_claim("pg")),
                        "http": await for_seconds(seconds, callers, http_redis),
                        "http_pg": await for_seconds(seconds, callers, http_sql),
                    }
                    results.append(result)
                    print(f"reservations run {run + 1}: " +
                          ", ".join(f"{k} {v:,.0f}/s" for k, v in result.items()), flush=True)
            # no code went out twice in either design
            handed = await rt.codes.count(TENANT, "lua", "tm")
            reserved_sql = await sql_pool[0].fetchval(
                "SELECT count(DISTINCT code) FROM sql_pool WHERE campaign_id = 'pg'"
                " AND status = 'reserved'")
            assert handed.available + handed.reserved == pool_size
            assert reserved_sql is not None
        finally:
            await sql_pool[0].close()
    return results


async def main(runs: int, codes: int, callers: int, seconds: float, pool_size: int,
               part: str) -> None:
    admin = uuid.uuid4().hex
    env = from_env(os.environ)
    embedded = EmbeddedStack(env.data_path())
    endpoints = await asyncio.to_thread(embedded.endpoints, env.redis_url, env.database_url)
    try:
        uploads: list[tuple[str, dict[str, float]]] = []  # (persister layout, its timings)
        reservations: list[dict[str, float]] = []
        store = Stores(redis_url=endpoints.redis_url, database_url=endpoints.database_url)
        for run in range(runs if part in ("all", "upload") else 0):
            for layout in LAYOUTS:
                timings = await upload_run(store, codes, layout)
                uploads.append((layout, timings))
                print(f"upload run {run + 1} ({layout} persister): reservable "
                      f"{timings['reservable_s']:.2f} s, persisted {timings['persisted_s']:.2f} s",
                      flush=True)
        if part in ("all", "reservations"):
            reservations = await reservation_runs(endpoints, admin, runs, callers, seconds,
                                                  pool_size)
    finally:
        await asyncio.to_thread(embedded.close)
    if uploads:
        print(f"\nupload of {codes:,} codes, median of {runs} runs:")
        for layout in LAYOUTS:
            mine = [r for name, r in uploads if name == layout]
            print(f"  {layout:<8} persister: reservable after "
                  f"{statistics.median(r['reservable_s'] for r in mine):.2f} s, persisted after "
                  f"{statistics.median(r['persisted_s'] for r in mine):.2f} s")
    if not reservations:
        return
    med = {k: statistics.median(r[k] for r in reservations) for k in reservations[0]}
    print(f"\nreservations/s at {callers} concurrent callers, median of {runs} runs of {seconds:g} s:")
    for k, v in med.items():
        print(f"  {k:<15} {v:>9,.0f} /s")
    print(f"  ratio lua / pg_skip_locked   {med['lua'] / med['pg_skip_locked']:.1f}x")
    print(f"  ratio http / http_pg         {med['http'] / med['http_pg']:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--callers", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pool", type=int, default=200_000, help="codes in each reservation pool")
    parser.add_argument("--part", choices=["all", "upload", "reservations"], default="all")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.codes, args.callers, args.seconds, args.pool, args.part))
