"""Promo redemption throughput, side by side in one run.

    .venv/bin/python -m benchmarks.promos [--runs 3] [--n 1500] [--concurrency 64]

Four measurements per run, each on a fresh promo code, same machine, same moment:

- ``http``: ``POST /v1/promos/{code}/redeem`` through a real aiohttp server on
  127.0.0.1 (auth, rate limiter, currency read, the redeem script);
- ``lua``: ``Promos.redeem_minor`` straight to Redis (the script alone);
- ``pg_row_lock``: the source system's design, one PostgreSQL transaction per use:
  ``SELECT ... FOR UPDATE`` on the code's row, limit checks, INSERT of the use (the
  0004 triggers then move the counters);
- ``persister``: draining the ``lua`` run's events into PostgreSQL (events/s).

Servers: ``DROPGATE_REDIS_URL`` / ``DROPGATE_DATABASE_URL`` when set, else the
embedded ones under ``DROPGATE_DATA_DIR``. Everything lives under a private key
prefix and schema, deleted afterwards. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from dropgate.embedded import EmbeddedStack
from dropgate.engine.keyspace import delete_prefix
from dropgate.http.app import create_app
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings, from_env

TENANT = "bench"


async def _gather_bounded(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Run op(0..n-1) with `concurrency` workers; return ops per second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def _pg_redeem(pool: asyncpg.Pool, code: str, customer: str, base: int) -> None:
    """The row-lock design: lock the code, check, insert the use (triggers count it)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT active, max_uses, times_used, per_customer_limit, bonus_percent
                 FROM promo_codes WHERE tenant_id = $1 AND code = $2 FOR UPDATE""", TENANT, code)
        if not row["active"] or (row["max_uses"] is not None and row["times_used"] >= row["max_uses"]):
            raise RuntimeError("refused")
        mine = await conn.fetchval(
            "SELECT count(*) FROM promo_code_uses WHERE tenant_id = $1 AND code = $2 AND customer_id = $3",
            TENANT, code, customer)
        if mine >= row["per_customer_limit"]:
            raise RuntimeError("customer limit")
        bonus = (base * row["bonus_percent"] + 500_000) // 1_000_000
        await conn.execute(
            "INSERT INTO promo_code_uses VALUES ($1, $2, $3, $4, $5, $6, now())",
            TENANT, code, uuid.uuid4().hex, customer, base, bonus)


async def one_run(rt: Runtime, persister: Persister, url: str, admin: str, run: int, n: int,
                  concurrency: int) -> dict[str, float]:
    promos = rt.promos
    for name in ("H", "L"):
        await promos.create(TENANT, code=f"{name}{run}", kind="percent", value=125_000,
                            currency="usd")
    headers = {"Authorization": f"Bearer {admin}", "X-Tenant-Id": TENANT}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def http_op(i: int) -> None:
            async with session.post(f"{url}/v1/promos/H{run}/redeem", headers=headers,
                                    json={"customer_id": f"h{run}-{i}", "base_amount": "19.99"}) as r:
                if r.status != 201:
                    raise RuntimeError(await r.text())
        http = await _gather_bounded(n, concurrency, http_op)

    async def lua_op(i: int) -> None:
        await promos.redeem_minor(TENANT, f"L{run}", customer_id=f"l{run}-{i}", base_minor=1999,
                                  currency="usd")
    lua = await _gather_bounded(n, concurrency, lua_op)

    backlog = sum((await persister.lag()).values())
    started = time.perf_counter()
    await persister.drain(timeout_s=120)
    drained = backlog / (time.perf_counter() - started)

    await rt.pool.execute(
        """INSERT INTO promo_codes (tenant_id, code, bonus_kind, bonus_percent, currency, active,
                                    created_at, version)
           VALUES ($1, $2, 'percent', 125000, 'usd', true, now(), 1)""", TENANT, f"P{run}")
    pg = await _gather_bounded(n, concurrency,
                               lambda i: _pg_redeem(rt.pool, f"P{run}", f"p{run}-{i}", 1999))
    # every design counted exactly n uses (in PostgreSQL, after the drain)
    for code in (f"H{run}", f"L{run}", f"P{run}"):
        used = await rt.pool.fetchval(
            "SELECT times_used FROM promo_codes WHERE tenant_id = $1 AND code = $2", TENANT, code)
        assert used == n, (code, used)
    return {"http": http, "lua": lua, "pg_row_lock": pg, "persister": drained}


async def main(runs: int, n: int, concurrency: int) -> None:
    isolation = "bench" + uuid.uuid4().hex[:10]
    admin = uuid.uuid4().hex
    env = from_env(os.environ)
    stack = EmbeddedStack(env.data_path())
    endpoints = await asyncio.to_thread(stack.endpoints, env.redis_url, env.database_url)
    settings: Settings = from_env(
        os.environ, redis_url=endpoints.redis_url, database_url=endpoints.database_url,
        key_prefix=isolation, database_schema=isolation, persister_enabled=False,
        admin_key=admin, redis_max_connections=concurrency + 8, database_pool_size=10,
        rate_limit_per_s=1000.0, rate_limit_burst=1000)
    conn = await asyncpg.connect(endpoints.database_url)
    await conn.execute(f'CREATE SCHEMA "{isolation}"')
    await conn.close()
    results: list[dict[str, float]] = []
    try:
        async with open_runtime(settings, run_persister=False) as rt:
            await rt.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
            runner = web.AppRunner(create_app(rt), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            # one persister for every run: a second would wait out the first one's leases
            persister = rt.new_persister(name="bench")
            await persister.drain()
            try:
                for run in range(runs):
                    results.append(await one_run(rt, persister, f"http://127.0.0.1:{port}", admin, run, n,
                                                 concurrency))
                    print(f"run {run + 1}: " + ", ".join(f"{k} {v:,.0f}/s"
                                                         for k, v in results[-1].items()))
            finally:
                await runner.cleanup()
                await delete_prefix(rt.redis, isolation)
    finally:
        conn = await asyncpg.connect(endpoints.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{isolation}" CASCADE')
        await conn.close()
        await asyncio.to_thread(stack.close)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"\nmedians of {runs} runs, {n} redemptions each, concurrency {concurrency}:")
    for k, v in med.items():
        print(f"  {k:<12} {v:>9,.0f} /s")
    print("medians of the per-run ratios (each measured side by side within one run):")
    for a, b in (("lua", "pg_row_lock"), ("http", "pg_row_lock"), ("lua", "http")):
        ratio = statistics.median(r[a] / r[b] for r in results)
        print(f"  {a} / {b:<12} {ratio:>5.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.n, args.concurrency))
