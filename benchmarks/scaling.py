"""The inputs of docs/scaling.md: Redis time per operation and API CPU per request.

    .venv/bin/python -m benchmarks.scaling [--requests 5000] [--runs 3]

A private redis-server (its own unix socket, so INFO commandstats count only this
run) and one ``dropgate serve`` process with the persister on. For each hot path it
sends ``--requests`` HTTP requests at 64 concurrent callers and reports:

- Redis µs per request: the server's total command time (INFO commandstats, every
  command: the script, the persister's XREADGROUP/XACK/XTRIM) divided by requests;
  and the script's own µs per call (``cmdstat_evalsha``);
- API CPU ms per request: the serve process's user+system CPU (/proc/PID/stat)
  divided by requests (it includes the persister's share of that process).

These are measured; docs/scaling.md derives the N-process x M-master predictions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from benchmarks.common import free_port, median, private_settings, run_load, settings_env, stores
from dropgate.embedded import redis_server_binary

CONCURRENCY = 64
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


@contextlib.contextmanager
def _private_redis() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="dropgate-scaling-"))
    sock = folder / "redis.sock"
    proc = subprocess.Popen([redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def _serve(env: dict[str, str]) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dropgate", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                await asyncio.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(60)


async def _commandstats(redis: Redis) -> dict[str, dict[str, float]]:
    stats: dict[str, dict[str, float]] = await redis.info("commandstats")
    return stats


async def _measure(redis: Redis, pid: int, requests: int,
                   one: Callable[[int], Awaitable[int]], ok: int) -> dict[str, float]:
    await redis.config_resetstat()
    cpu0 = _cpu_s(pid)
    result = await run_load(requests, CONCURRENCY, one)
    await asyncio.sleep(0.5)  # the persister catches up inside the same process
    cpu = _cpu_s(pid) - cpu0
    assert result.statuses == {ok: requests}, result.statuses
    stats = await _commandstats(redis)
    total_us = sum(float(v["usec"]) for k, v in stats.items() if k != "cmdstat_config")
    evalsha = stats.get("cmdstat_evalsha", {"usec_per_call": 0.0})
    return {"redis_us_per_request": total_us / requests,
            "script_us_per_call": float(evalsha["usec_per_call"]),
            "api_cpu_ms_per_request": cpu * 1000 / requests,
            "per_s": result.per_s}


async def run(requests: int) -> dict[str, dict[str, float]]:
    s = stores()
    out: dict[str, dict[str, float]] = {}
    with _private_redis() as redis_url:
        async with private_settings(s, redis_url=redis_url, redis_max_connections=64) as settings, \
                _serve(settings_env(settings)) as (url, pid):
            redis = Redis.from_url(redis_url)
            admin = {"Authorization": f"Bearer {settings.admin_key}"}
            conn = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=conn) as http:
                async with http.post(url + "/v1/tenants", json={"tenant_id": "bench", "name": "b"},
                                     headers=admin) as r:
                    assert r.status == 201
                headers = {**admin, "X-Tenant-Id": "bench"}
                async with http.post(url + "/v1/invites", json={"code": "OPEN", "max_uses": 0},
                                     headers=headers) as r:
                    assert r.status == 201

                async def healthz(i: int) -> int:
                    async with http.get(url + "/healthz") as r:
                        await r.read()
                        return r.status

                async def redeem(i: int) -> int:
                    async with http.post(url + "/v1/invites/OPEN/redeem", json={"user_id": f"u{i}"},
                                         headers=headers) as r:
                        await r.read()
                        return r.status

                out["healthz (no store)"] = await _measure(redis, pid, requests, healthz, 200)
                out["invite redeem"] = await _measure(redis, pid, requests, redeem, 200)
            await redis.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [await run(args.requests) for _ in range(args.runs)]
    print(f"load (1 min): {os.getloadavg()[0]:.1f}; medians of {args.runs} runs of {args.requests}")
    print("| path | Redis µs/request (all commands) | script µs/call | API CPU ms/request | req/s |")
    print("| --- | --- | --- | --- | --- |")
    for path in runs[0]:
        m = {k: median([r[path][k] for r in runs]) for k in runs[0][path]}
        print(f"| {path} | {m['redis_us_per_request']:.1f} | {m['script_us_per_call']:.1f} | "
              f"{m['api_cpu_ms_per_request']:.3f} | {m['per_s']:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
