"""Invite redemptions per second at 256 concurrent callers: through the engine, through HTTP.

    .venv/bin/python -m benchmarks.invites [--runs 5] [--requests 20000]

Every redemption succeeds (an unlimited code, a new user each time), so each one runs
the whole script: checks, SADD, HINCRBY, XADD. The persister runs alongside, as in
production (in-process for the engine run, inside the server process for HTTP).
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.common import fmt_runs, median, private_runtime, private_settings, run_load, server_process, stores

CONCURRENCY = 256


async def engine_run(s: object, requests: int, run: int) -> float:
    from benchmarks.common import Stores

    assert isinstance(s, Stores)
    async with private_runtime(s, redis_max_connections=64) as rt:
        await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
        await rt.invites.create("bench", code="OPEN", max_uses=0, expires_at_ms=None, active=True)

        async def one(i: int) -> int:
            await rt.invites.redeem("bench", "OPEN", user_id=f"u{i}")
            return 200

        result = await run_load(requests, CONCURRENCY, one)
        assert result.statuses == {200: requests}
        return result.per_s


async def http_run(s: object, requests: int, run: int) -> tuple[float, float]:
    from benchmarks.common import Stores

    assert isinstance(s, Stores)
    async with private_settings(s, redis_max_connections=64) as settings, server_process(settings) as url:
        admin = {"Authorization": f"Bearer {settings.admin_key}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:
            async with http.post(url + "/v1/tenants", json={"tenant_id": "bench", "name": "b"}, headers=admin) as r:
                assert r.status == 201
            headers = {**admin, "X-Tenant-Id": "bench"}
            async with http.post(url + "/v1/invites", json={"code": "OPEN", "max_uses": 0}, headers=headers) as r:
                assert r.status == 201

            async def one(i: int) -> int:
                async with http.post(url + "/v1/invites/OPEN/redeem", json={"user_id": f"u{i}"},
                                     headers=headers) as r:
                    await r.read()
                    return r.status

            result = await run_load(requests, CONCURRENCY, one)
            assert result.statuses == {200: requests}, result.statuses
            return result.per_s, result.percentile(0.99)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    s = stores()
    engine, http, p99 = [], [], []
    for run in range(args.runs):  # alternate the two, so drift on a noisy machine hits both
        engine.append(await engine_run(s, args.requests, run))
        per_s, tail = await http_run(s, args.requests, run)
        http.append(per_s)
        p99.append(tail * 1000)
    print(f"invite redemptions, {CONCURRENCY} concurrent callers, {args.requests} per run")
    print(f"  engine (no HTTP): {fmt_runs(engine)}")
    print(f"  HTTP:             {fmt_runs(http)}; p99 median {median(p99):.1f} ms")
    print(f"  HTTP / engine:    {median(http) / median(engine):.2f}")
    if s.stack is not None:
        s.stack.close()


if __name__ == "__main__":
    asyncio.run(main())
