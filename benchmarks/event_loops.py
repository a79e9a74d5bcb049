"""uvloop against asyncio's own loop, side by side in one run: HTTP and the purchase engine.

    .venv/bin/python -m benchmarks.event_loops [--rounds 3] [--seconds 3] [--clients 1000]

HTTP: two dropgate servers (the offers benchmark's server, each in its own process and
on its own key prefix), one with ``DROPGATE_EVENT_LOOP=asyncio`` and one with
``uvloop``, measured in turns within each round on the no-op JSON POST and on
``POST /v1/offers/hot/purchase``: requests/s and the server process's CPU per request.

Engine: the purchase path without HTTP (``Purchases.purchase``: hold, sandbox checkout,
stored response) from 1,000 concurrent callers in this process, run once on each loop:
CPU microseconds per purchase. This is the Python a purchase costs beyond the HTTP
layer that the no-op shares.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
from typing import Any

import msgspec

from benchmarks.common import private_settings, stores
from benchmarks.offers import Server, _summary, cpu_s, load, noop_maker, purchase_maker
from dropgate.gcsettings import tune_gc

LOOPS = ("asyncio", "uvloop")


async def http_rounds(rounds: int, seconds: float, clients: int) -> dict[str, list[tuple[float, float]]]:
    s = stores()
    out: dict[str, list[tuple[float, float]]] = {}
    async with private_settings(s, tenant_concurrency=100_000, tenant_admission=100_000, persister_enabled=False,
                                redis_max_connections=64) as a, \
            private_settings(s, tenant_concurrency=100_000, tenant_admission=100_000, persister_enabled=False,
                             redis_max_connections=64) as b:
        servers: dict[str, Server] = {}
        try:
            for loop, settings in zip(LOOPS, (a, b), strict=True):
                os.environ["DROPGATE_EVENT_LOOP"] = loop  # inherited by the server process
                servers[loop] = Server(["--dropgate", msgspec.json.encode(settings).decode(),
                                        "--inventory", "1000000000"])
            for r in range(rounds):
                for what in ("noop", "purchase"):
                    for loop, server in servers.items():
                        make = noop_maker() if what == "noop" else purchase_maker(server.key, f"{loop}{r}u")
                        before = cpu_s(server.proc.pid)
                        w = await load(server.port, make, clients=clients, seconds=seconds)
                        if set(w.statuses) != {201}:
                            raise RuntimeError(f"{loop} {what}: unexpected statuses {w.statuses}")
                        cpu = (cpu_s(server.proc.pid) - before) * 1e6 / max(1, w.total)
                        out.setdefault(f"{what} on {loop}", []).append((_summary(w)[0], cpu))
                        print(f"  round {r + 1} {what:8s} {loop:8s} {out[f'{what} on {loop}'][-1][0]:9,.0f}/s"
                              f"  server CPU {cpu:4.0f} us/request", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    return out


async def engine_purchases(callers: int = 1000, per_caller: int = 40) -> float:
    """CPU microseconds per purchase through ``Purchases.purchase``, no HTTP."""
    from dropgate.runtime import open_runtime

    async with private_settings(stores(), tenant_concurrency=100_000, tenant_admission=100_000, persister_enabled=False,
                                redis_max_connections=64) as settings, \
            open_runtime(settings, run_persister=False) as rt:
        tune_gc()
        await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
        await rt.offers.create("bench", offer_id="hot", event_id="drop", name="Hot", price_minor=2500,
                               currency="usd", total=10**9, max_per_order=3, expires_at_ms=None, active=True)

        async def caller(tag: str) -> None:
            for k in range(per_caller):
                answer = await rt.purchases.purchase("bench", "hot", user_id=f"{tag}x{k}", quantity=1,
                                                     idempotency_key=f"{tag}x{k}")
                assert answer.status == 201, answer

        await asyncio.gather(*(caller(f"w{i}") for i in range(callers)))  # warm-up
        cpu: list[float] = []
        for rep in range(3):
            before = resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.gather(*(caller(f"r{rep}c{i}") for i in range(callers)))
            after = resource.getrusage(resource.RUSAGE_SELF)
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            cpu.append(used * 1e6 / (callers * per_caller))
        return statistics.median(cpu)


def main(rounds: int, seconds: float, clients: int) -> None:
    print(f"event loops: {rounds} rounds of {seconds}s per server and request, {clients} clients")
    results = asyncio.run(http_rounds(rounds, seconds, clients))
    engine: dict[str, Any] = {}
    for loop in LOOPS:  # each in a fresh process: one loop per interpreter
        done = subprocess.run([sys.executable, "-m", "benchmarks.event_loops", "--engine-only", loop],
                              capture_output=True, text=True, check=True)
        engine[loop] = float(done.stdout.strip().splitlines()[-1])
    print("\nsummary (medians)")
    for name, values in results.items():
        print(f"  {name:20s} {statistics.median(v[0] for v in values):9,.0f}/s   server CPU "
              f"{statistics.median(v[1] for v in values):4.0f} us/request")
    for loop, us in engine.items():
        print(f"  engine purchase on {loop:8s} {us:5.1f} us of CPU per purchase (no HTTP)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--engine-only", choices=LOOPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_only == "uvloop":
        import uvloop

        print(uvloop.run(engine_purchases()))
    elif args.engine_only:
        print(asyncio.run(engine_purchases()))
    else:
        main(args.rounds, args.seconds, args.clients)
