"""What every benchmark shares: private stores, a server process, a load generator, stats.

Benchmarks use the machine's Redis/PostgreSQL when ``DROPGATE_BENCH_REDIS_URL`` /
``DROPGATE_BENCH_DATABASE_URL`` are set (or the local services answer on 127.0.0.1),
else embedded servers; always under a private key prefix and schema, removed after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from dropgate.embedded import EmbeddedStack
from dropgate.engine.keyspace import delete_prefix
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Stores:
    redis_url: str
    database_url: str
    stack: EmbeddedStack | None = None


def stores() -> Stores:
    redis_url = os.environ.get("DROPGATE_BENCH_REDIS_URL")
    database_url = os.environ.get("DROPGATE_BENCH_DATABASE_URL")
    if not redis_url and _answers(6379):
        redis_url = "redis://127.0.0.1:6379/0"
    if not database_url and _answers(5432):
        database_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    stack = None
    if not redis_url or not database_url:
        from pathlib import Path

        stack = EmbeddedStack(Path(".dropgate-bench").resolve())
        endpoints = stack.endpoints(redis_url, database_url)
        redis_url, database_url = endpoints.redis_url, endpoints.database_url
    return Stores(redis_url=redis_url, database_url=database_url, stack=stack)


@contextlib.asynccontextmanager
async def private_settings(s: Stores, **overrides: Any) -> AsyncIterator[Settings]:
    """Settings on a fresh key prefix and schema; both removed afterwards."""
    name = "b" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(s.database_url)
    await conn.execute(f'CREATE SCHEMA "{name}"')
    await conn.close()
    values: dict[str, Any] = dict(redis_url=s.redis_url, database_url=s.database_url, key_prefix=name,
                                  database_schema=name, admin_key="bench-admin-key-0123456789abcdef0123",
                                  persister_enabled=True,
                                  log_level="WARNING", max_backlog=5_000_000,
                                  payment_provider="sandbox")  # the benchmarks pay on the sandbox
    values.update(overrides)
    try:
        yield Settings(**values)
    finally:
        redis = Redis.from_url(s.redis_url)
        await delete_prefix(redis, name, batch=5000)
        await redis.aclose()
        conn = await asyncpg.connect(s.database_url)
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        await conn.close()


@contextlib.asynccontextmanager
async def private_runtime(s: Stores, **overrides: Any) -> AsyncIterator[Runtime]:
    async with private_settings(s, **overrides) as settings, open_runtime(settings) as runtime:
        yield runtime


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    for key, value in {
        "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
        "KEY_PREFIX": settings.key_prefix, "DATABASE_SCHEMA": settings.database_schema,
        "ADMIN_KEY": settings.admin_key, "PARTITIONS": settings.partitions,
        "LOG_LEVEL": "WARNING", "MAX_BACKLOG": settings.max_backlog,
        "RATE_LIMIT_PER_S": settings.rate_limit_per_s, "RATE_LIMIT_BURST": settings.rate_limit_burst,
        "PERSISTER_BLOCK_MS": settings.persister_block_ms, "TENANT_ADMISSION": settings.tenant_admission,
        "TENANT_ADMISSION_CONTENDED": settings.tenant_admission_contended,
        # `serve` needs an explicit provider; the benchmarks pay on the sandbox
        "PAYMENT_PROVIDER": settings.payment_provider or "sandbox",
    }.items():
        if value is not None:
            env[f"DROPGATE_{key}"] = str(value)
    return env


async def perf_record(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process:
    """``perf record`` of process ``pid`` for ``seconds`` into ``out`` (cpu-clock: this guest
    counts no cycles); await its ``wait()`` before reading ``out``."""
    return await asyncio.create_subprocess_exec(
        "perf", "record", "-e", "cpu-clock", "-F", "1999", "-p", str(pid), "-o", str(out), "--",
        "sleep", str(seconds), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], *, timeout_s: float) -> None:
    """SIGTERM ``proc`` if it still runs and kill it if it outlives ``timeout_s``: a hung
    server must not hang the benchmark. (The tests' twin, for several processes at once, is
    tests/support/processes.py; benchmarks import nothing from tests.)"""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def server_process(settings: Settings, *extra_args: str) -> AsyncIterator[str]:
    """``dropgate serve`` in its own process (its own core); yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dropgate", "serve", "--port", str(port), *extra_args],
                            env=settings_env(settings), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with session.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                await asyncio.sleep(0.1)
        yield url
    finally:
        stop_process(proc, timeout_s=60)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def run_load(total: int, concurrency: int, one: Callable[[int], Awaitable[int]]) -> LoadResult:
    """``total`` calls of ``one(i)`` (returns a status) by ``concurrency`` workers."""
    counter = iter(range(total))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            status = await one(i)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(requests=total, seconds=time.perf_counter() - started, latencies_s=latencies,
                      statuses=statuses)


def median(values: list[float]) -> float:
    return statistics.median(values)


FAST_HOST_US = "9.5-11"  # what host_speed_us gave on the fastest hosts measured here


def host_speed_us() -> float:
    """Microseconds one ``sum(range(1000))`` takes here, the median of 5 repeats: how fast
    this host runs Python at the moment, the figure each BENCHMARKS.md section quotes as
    "the host-speed command" (``FAST_HOST_US`` on a fast host; the slowest seen here, 32). A
    ratio measured on one host is not the same ratio on another: a slow host charges a
    purchase's larger working set more than the no-op's (BENCHMARKS.md, "A noisy host")."""
    runs = timeit.repeat("sum(range(1000))", number=20_000, repeat=5)
    return statistics.median(runs) / 20_000 * 1e6


HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def halt_poll() -> str:
    """A virtual machine guest's halt polling, as a benchmark's header states it: how long an
    idle virtual CPU spins before it halts, after which waking it goes through the hypervisor
    (``benchmarks.wakeups``: 24 µs more per wakeup across cores on a guest with it off)."""
    if not HALT_POLL.exists():
        return "no guest halt polling here"
    return f"guest halt polling {HALT_POLL.read_text().strip()} ns"


def fmt_runs(values: list[float], unit: str = "/s") -> str:
    return f"median {median(values):,.0f}{unit} (runs: {', '.join(f'{v:,.0f}' for v in values)})"


async def serve_until_sigterm(runner: Any, port: int) -> None:
    """Serve an aiohttp runner on 127.0.0.1:``port`` as ``dropgate serve`` does (backlog
    4096, ``tune_gc``) until SIGTERM: the one way the benchmarks' bare servers run."""
    from aiohttp import web

    from dropgate.gcsettings import tune_gc

    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    tune_gc()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


def backend_cpu_s(pid: int) -> float:
    """A PostgreSQL backend's own on-CPU time (``/proc/<pid>/schedstat``, ns): the work of
    the statements it ran, which a busy machine disturbs far less than their wall time."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def require_local_backend(pid: int, url: str, benchmark: str) -> None:
    """One line, not a traceback, when a backend's CPU cannot be read here."""
    if not Path(f"/proc/{pid}/schedstat").exists():
        raise SystemExit(f"benchmarks.{benchmark} reads PostgreSQL's backend CPU from /proc: {url} is not "
                         f"a PostgreSQL on this machine (its backend {pid} is not here); set "
                         "DROPGATE_BENCH_DATABASE_URL to one that is")
