"""Every hot path under wrk, against a bare no-op and the source systems' designs: one command, one picture.

    make bench            # = .venv/bin/python -m benchmarks.hotpaths
    .venv/bin/python -m benchmarks.hotpaths [--paths invites,promos,codes,offers] [--rounds 3]
        [--seconds 5] [--connections 256] [--threads 1] [--warmup 1] [--codes 200000] [--scarce 500]
        [--out docs/benchmarks]

Why (issue #19): a Python load generator on the same 2 cores flatters every ratio, and
figures measured in separate runs of this shared machine do not compare. So the load
comes from wrk (C; Debian's package, installed with apt-get when missing), and for
every hot path four servers take turns in the same rounds:

- ``dropgate``: ``dropgate serve --no-persister`` (one API process) with ``dropgate
  persister`` in a process of its own, as a drop deploys it; sandbox payments, the
  tenant purchase cap raised to 100,000 (the default answers 429 past 256 in flight),
  its own defaults otherwise;
- ``no-op``: a bare aiohttp JSON POST (uvloop, ``tune_gc``; ``benchmarks.revisions --noop``):
  the ceiling of the HTTP layer on this machine, and the yardstick of issue #19's targets;
- ``written no-op``: the same no-op answering with dropgate's ``JsonResponse`` (the same
  bytes as ``web.Response``, written in one piece; ``--noop --written``): the ceiling of
  the HTTP layer as dropgate's answers use it. Not a target: printed so that a reader
  sees what dropgate costs above its own HTTP layer as well as above aiohttp's;
- the source system's design for that path, behind a bare aiohttp app of the same
  kind (uvloop, ``tune_gc``, an asyncpg pool of 20), on the dropgate migrations' own
  tables and triggers: invites ``SELECT ... FOR UPDATE`` on the code's row then the
  use ``INSERT`` (the 0002 trigger counts it); promos ``benchmarks.promos``'s row lock
  (the 0004 statement triggers count it); codes ``benchmarks.codes``'s ``FOR UPDATE
  SKIP LOCKED`` claim; offers ``benchmarks.offers --serve --pg`` (``FOR UPDATE`` on the
  offer row, ``UPDATE``, ``INSERT``).

Every request is meant to succeed: wrk's Lua script (``benchmarks.revisions``) makes
a new user per request, and an Idempotency-Key on the purchase (``--keys``: on every
dropgate request, as dropgate's client sends them); any non-2xx answer, empty reservation
or socket error flags the window. Reported per path and design: requests/s and its
ratio to the no-op's in the same round; the server process's CPU per request
(``/proc/<pid>/stat`` utime + stime over the window, divided by its requests) and the
no-op's CPU per request divided by it (CPU efficiency: 1.0 = as cheap as the no-op;
Redis's and PostgreSQL's CPU are not in it); p50 and p99 (wrk ``--latency``) and p99
over the no-op's p99. Medians of ``--rounds``; ratios are medians of per-round ratios,
which the targets block prints with their rounds' range (one slow no-op round moves a
median of three).

During every dropgate window the partition logs are sampled every 0.2 s: the
unpersisted backlog (``XLEN``) and the events ever appended (``XINFO STREAM``
``entries-added``), so the crowd's event rate, the persister's rate and the time the
backlog takes to drain after the crowd are all measured (``entries-added`` needs Redis 7:
on the embedded 6.2 the two rates print n/a); the last round's backlog over time is
charted. Events are log entries, not requests (a batch of coalesced reservations is
one event), and a drain rate is printed only for a backlog of at least 1,000 events
that took at least a second to clear: a few events gone by the next sample would read
as a rate of the sampling (issue #19's "codes at 32/s" was one).

After the rounds, the persister's own rate on each path's events, in the same run: one
more dropgate window (``--seconds``, at most ``CEILING_S``) with the persister process
stopped (``SIGSTOP``), so the crowd's events pile up, then resumed (``SIGCONT``) and the
backlog timed to empty (sampled every ``CEILING_SAMPLE_S``): the drain rate is what the
persister and PostgreSQL apply with the API idle, against 1.5x the fastest crowd's event
rate (issue #19's target). The pause stays under the persister's lease (10 s) and the
backlog under ``max_backlog``, so it resumes as the owner of its partitions, where it was.

Then the correctness check: for each path a scarce entity of
``--scarce`` units (an offer, an invite with ``max_uses``, a promo with ``max_uses``, a
campaign with that many codes) meets a crowd of twice as many requests (counted one by
one by an aiohttp client: wrk stops with requests in flight); exactly ``--scarce``
succeed and the rest are refused (zero oversell), Redis says so, and after the drain
PostgreSQL equals Redis for the scarce and the hot entities; then ``dropgate
reconcile`` must exit 0.

Redis/PostgreSQL: ``DROPGATE_BENCH_REDIS_URL`` / ``DROPGATE_BENCH_DATABASE_URL`` (or
``DROPGATE_REDIS_URL`` / ``DROPGATE_DATABASE_URL``), else the local services on
127.0.0.1:6379/5432 when they answer, else embedded ones (``benchmarks.common.stores``);
always under private key prefixes and schemas, removed after. Prints a Markdown table
and issue #19's targets, met or not, and writes ``hotpaths.json`` and PNG charts
(matplotlib) into ``--out``. Exit status 1 when a window was flagged or the
correctness check failed (a missed target is not a failure of the command).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from benchmarks import revisions
from benchmarks.common import (
    FAST_HOST_US,
    Stores,
    free_port,
    halt_poll,
    host_speed_us,
    private_settings,
    serve_until_sigterm,
    settings_env,
    stores,
)
from benchmarks.revisions import NOOP, Route, Server, Window, cpu_s, ensure_wrk, lua_script
from benchmarks.storecpu import StoreCpu
from dropgate.engine.keys import Keys
from dropgate.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TENANT, OFFER, INVITE, PROMO, CAMPAIGN, CODE_TYPE = "bench", "hot", "OPEN", "OPEN", "pool", "tm"
SCARCE_OFFER, SCARCE_CODE, SCARCE_CAMPAIGN = "scarce", "SCARCE", "scarce"
POOL_SIZE = 20  # asyncpg connections of every baseline server
SAMPLE_S = 0.2  # the partition logs' sampling interval during a dropgate window
MIN_DRAIN_S = 1.0  # a drain rate is timed only over a drain this long (5 samples or more)
MIN_DRAIN_EVENTS = 1000  # ... of a backlog this large (a dozen events are a latency, not a rate)
CEILING_S = 5  # the persister's pause: under its 10 s lease, and a crowd's backlog under max_backlog
CEILING_SAMPLE_S = 0.05  # the backlog's sampling while the paused persister catches up


@dataclass(frozen=True)
class HotPath:
    """One hot operation: its request (the same route on dropgate and its baseline) and the baseline's name."""

    route: Route
    baseline: str
    scarce: Route  # the same operation on the scarce entity of the correctness check


PATHS = {
    "invites": HotPath(Route(f"/v1/invites/{INVITE}/redeem", '{"user_id":"@"}'),
                       "FOR UPDATE + trigger",
                       Route(f"/v1/invites/{SCARCE_CODE}/redeem", '{"user_id":"@"}')),
    "promos": HotPath(Route(f"/v1/promos/{PROMO}/redeem", '{"customer_id":"@","base_amount":"19.99"}'),
                      "FOR UPDATE + triggers",
                      Route(f"/v1/promos/{SCARCE_CODE}/redeem", '{"customer_id":"@","base_amount":"19.99"}')),
    "codes": HotPath(Route(f"/v1/campaigns/{CAMPAIGN}/reservations", f'{{"type":"{CODE_TYPE}","count":1}}',
                           reserves=True),
                     "SKIP LOCKED",
                     Route(f"/v1/campaigns/{SCARCE_CAMPAIGN}/reservations", f'{{"type":"{CODE_TYPE}","count":1}}',
                           reserves=True)),
    "offers": HotPath(Route(f"/v1/offers/{OFFER}/purchase", '{"user_id":"@","quantity":1}', idempotent=True),
                      "FOR UPDATE",
                      Route(f"/v1/offers/{SCARCE_OFFER}/purchase", '{"user_id":"@","quantity":1}',
                            idempotent=True)),
}


def with_keys() -> None:
    """Every path's requests with an Idempotency-Key each (``--keys``): dropgate's client
    sends one on every POST, so a crowd through it pays for its records. The baselines
    and no-ops answer as before (they keep no records)."""
    for name, hot in PATHS.items():
        PATHS[name] = replace(hot, route=replace(hot.route, idempotent=True),
                              scarce=replace(hot.scarce, idempotent=True))


DESIGNS = ("dropgate", "baseline", "no-op", "written no-op")
NOOPS = ("no-op", "written no-op")
DESIGN_NAMES = {"dropgate": "dropgate", "no-op": "no-op", "written no-op": "no-op, JsonResponse"}


# -- the baseline server for invites, promos and codes (its own process) -------------------------
def serve_sql(port: int, database_url: str, schema: str, codes: int) -> None:
    """The source systems' designs behind a bare aiohttp app, on the dropgate tables and triggers."""
    import msgspec
    import uvloop
    from aiohttp import web

    from benchmarks.codes import _SQL_CLAIM
    from benchmarks.promos import _pg_redeem
    from dropgate.persistence.migrate import migrate

    async def run() -> None:
        pool = await asyncpg.create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE,
                                         server_settings={"search_path": schema})
        await migrate(pool)
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO invite_codes (tenant_id, code, max_uses, active, created_at, version) "
                               "VALUES ($1, $2, 0, true, now(), 1)", TENANT, INVITE)
            await conn.execute("""INSERT INTO promo_codes (tenant_id, code, bonus_kind, bonus_percent, currency,
                                                           active, created_at, version)
                                  VALUES ($1, $2, 'percent', 125000, 'usd', true, now(), 1)""", TENANT, PROMO)
            await conn.execute("""CREATE TABLE sql_pool (
                                      id bigserial PRIMARY KEY, campaign_id text NOT NULL, type text NOT NULL,
                                      code text NOT NULL, status text NOT NULL DEFAULT 'available',
                                      reserve_id text, reserved_at timestamptz, expires_at timestamptz,
                                      UNIQUE (campaign_id, code));
                                  CREATE INDEX sql_pool_claim ON sql_pool (campaign_id, type, status)""")
        uploads = 0

        async def topup(n: int) -> None:
            nonlocal uploads
            uploads += 1
            await pool.execute("INSERT INTO sql_pool (campaign_id, type, code) "
                               "SELECT $1, $2, 'B' || $3::int || '-' || g FROM generate_series(1, $4::int) g",
                               CAMPAIGN, CODE_TYPE, uploads, n)
            await pool.execute("ANALYZE sql_pool")

        await topup(codes)

        async def invite(request: web.Request) -> web.Response:
            user = msgspec.json.decode(await request.read())["user_id"]
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow("SELECT max_uses, used_count, active, expires_at FROM invite_codes "
                                          "WHERE tenant_id = $1 AND code = $2 FOR UPDATE",
                                          TENANT, request.match_info["code"])
                if row is None or not row["active"] or (0 < row["max_uses"] <= row["used_count"]):
                    return web.json_response({"code": "EXHAUSTED"}, status=409)
                inserted = await conn.execute(  # the 0002 trigger moves used_count
                    "INSERT INTO invite_code_uses VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING",
                    TENANT, request.match_info["code"], user)
                if inserted.endswith(" 0"):
                    return web.json_response({"code": "ALREADY_USED"}, status=409)
            return web.json_response({"code": request.match_info["code"], "user_id": user,
                                      "used_count": row["used_count"] + 1})

        async def promo(request: web.Request) -> web.Response:
            body = msgspec.json.decode(await request.read())
            base = int(Decimal(body["base_amount"]) * 100)
            try:
                await _pg_redeem(pool, request.match_info["code"], body["customer_id"], base)
            except RuntimeError as exc:
                return web.json_response({"code": str(exc)}, status=409)
            return web.json_response({"customer_id": body["customer_id"]}, status=201)

        async def reserve(request: web.Request) -> web.Response:
            body = msgspec.json.decode(await request.read())
            rows = await pool.fetch(_SQL_CLAIM, request.match_info["campaign"], body["type"], int(body["count"]),
                                    uuid.uuid4().hex)
            return web.json_response({"codes": [r["code"] for r in rows]})

        async def more_codes(request: web.Request) -> web.Response:
            await topup(int((await request.json())["n"]))
            return web.json_response({"ok": True})

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_post("/v1/invites/{code}/redeem", invite)
        app.router.add_post("/v1/promos/{code}/redeem", promo)
        app.router.add_post("/v1/campaigns/{campaign}/reservations", reserve)
        app.router.add_post("/bench/codes", more_codes)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await serve_until_sigterm(runner, port)
        await pool.close()

    uvloop.run(run())


# -- the partition logs: backlog and rates -------------------------------------------------------
class Logs:
    """The partition logs of one dropgate keyspace: unpersisted events and events ever appended."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        keys = Keys(settings.key_prefix, settings.partitions)
        self.names = [keys.log(p) for p in range(settings.partitions)]

    async def sample(self) -> tuple[int, int]:
        """(backlog, appended): the persister has applied ``appended - backlog`` events so far.
        ``appended`` is -1 before Redis 7 (no ``entries-added``; the embedded Redis is 6.2)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in self.names:
                pipe.xlen(name)
                pipe.execute_command("XINFO", "STREAM", name)
            answers = await pipe.execute(raise_on_error=False)
        backlog = sum(int(n) for n in answers[0::2] if isinstance(n, int))
        appended = 0
        for info in answers[1::2]:
            if isinstance(info, list):  # a missing stream (no event yet) answers an error
                info = dict(zip(info[0::2], info[1::2], strict=True))
            if isinstance(info, dict):
                added = info.get(b"entries-added", info.get("entries-added"))
                if added is None:
                    return backlog, -1
                appended += int(added)
        return backlog, appended

    async def drained(self, timeout_s: float = 600) -> float:
        """Wait until nothing is unpersisted; the seconds it took."""
        started = time.monotonic()
        while (await self.sample())[0] > 0:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the persister did not drain in {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
        return time.monotonic() - started


@dataclass
class Lag:
    """The backlog over one dropgate window and its drain: (seconds since the crowd began, backlog, appended)."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)
    crowd_s: float = 0.0

    def summary(self) -> dict[str, float | None]:
        during = [s for s in self.samples if s[0] <= self.crowd_s + 1e-9] or self.samples[:1]
        first, end, last = self.samples[0], during[-1], self.samples[-1]
        rates: dict[str, float | None] = {"crowd_events_per_s": None, "persisted_per_s": None}
        if first[2] >= 0 and end[2] >= 0 and end[0] > first[0]:
            rates = {"crowd_events_per_s": (end[2] - first[2]) / (end[0] - first[0]),
                     "persisted_per_s": ((end[2] - end[1]) - (first[2] - first[1])) / (end[0] - first[0])}
        # the backlog at the crowd's last sample, and the time to the first empty sample after it: the
        # drain rate is a lower bound (samples SAMPLE_S apart), so it is given only for a backlog of
        # MIN_DRAIN_EVENTS that took MIN_DRAIN_S: 7 events cleared by the next sample would read "35/s",
        # a figure of the sampling (issue #19's "codes at 32/s" was one), and 12 events the persister
        # picked up a second later "11/s", a figure of its polling, neither of its throughput
        zero = next((s[0] for s in self.samples if s[0] > end[0] and s[1] == 0), last[0])
        drain_s = 0.0 if end[1] == 0 else zero - end[0]
        timed = drain_s >= MIN_DRAIN_S and end[1] >= MIN_DRAIN_EVENTS
        return {**rates, "peak_backlog": max(s[1] for s in self.samples), "backlog_at_end": end[1],
                "drain_s": drain_s, "drain_per_s": end[1] / drain_s if timed else None}


async def watch(logs: Logs, lag: Lag, started: float, stop: asyncio.Event) -> None:
    while True:
        backlog, appended = await logs.sample()
        lag.samples.append((time.perf_counter() - started, backlog, appended))
        if stop.is_set() and backlog == 0:
            return
        await asyncio.sleep(SAMPLE_S)


# -- servers -------------------------------------------------------------------------------------
def launch(name: str, argv: list[str], env: dict[str, str], tmp: Path, *, port: bool = True,
           ready_line: bool = False) -> Server:
    """A process (not waited for: ``ready``) on a free port; its stderr in ``tmp/NAME.log``.
    ``ready_line``: it prints ``READY ...`` once it serves (``benchmarks.offers --serve``), else it answers
    ``GET /healthz``."""
    number = free_port()
    with (tmp / f"{name}.log").open("wb") as err:
        proc = subprocess.Popen([*argv, *(["--port", str(number)] if port else [])], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE if ready_line else subprocess.DEVNULL, stderr=err)
    return Server(name, proc, f"http://127.0.0.1:{number}" if port else "")


async def ready(server: Server, tmp: Path, timeout_s: float = 120) -> None:
    if server.proc.stdout is not None:
        line = (await asyncio.to_thread(server.proc.stdout.readline)).decode().strip()
        if line.startswith("READY"):
            return
    else:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while server.proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(server.url + "/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
    stderr = await asyncio.to_thread((tmp / f"{server.name}.log").read_text)
    raise RuntimeError(f"{server.name} did not start; its stderr:\n{stderr[-3000:]}")


@dataclass
class PathRun:
    """One path's four servers and their windows."""

    name: str
    servers: dict[str, Server]
    windows: dict[str, list[Window]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    # the neighbours' CPU per request over each window, in us: redis, postgres (None: not on
    # this machine), persister, wrk (benchmarks/storecpu.py)
    neighbours_us: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)
    # the shares of each window no process was charged for: idle, interrupts, stolen
    machine: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    lags: list[Lag] = field(default_factory=list)
    ceiling: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace, s: Stores, tmp: Path) -> None:
        self.args, self.s, self.tmp = args, s, tmp
        self.fastest_codes = 0.0
        self.store_cpu: StoreCpu | None = None  # set by ``measure``

    async def topup(self, server: Server, n: int) -> None:
        if server.name == "dropgate":
            await revisions.upload(server, n)
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            await revisions.post(http, server.url + "/bench/codes", {}, json={"n": n})
        server.codes_left += n

    async def enough_codes(self, server: Server, route: Route, seconds: int) -> None:
        """Enough codes for a window at the fastest rate seen, twice over (a reserving route)."""
        if route.reserves:
            need = int(2 * max(self.fastest_codes, min(20_000, 1000 * self.args.connections)) * seconds)
            if server.codes_left < need:
                await self.topup(server, max(self.args.codes, need))

    async def ceiling(self, p: PathRun, persister: Server, logs: Logs) -> dict[str, Any]:
        """The persister's own rate on this path's events: a crowd with the persister stopped,
        then its backlog timed from the resume to empty. Why: while it keeps pace, a crowd
        shows only that the persister is at least as fast as the crowd, not by how much."""
        server, route = p.servers["dropgate"], PATHS[p.name].route
        seconds = min(self.args.seconds, CEILING_S)
        await self.enough_codes(server, route, seconds)
        await logs.drained()
        pid = persister.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            w = await revisions.wrk(self.args, server, route, self.tmp / f"{p.name}-dropgate.lua",
                                    f"{p.name[0]}c", seconds)
            backlog = (await logs.sample())[0]
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.perf_counter()
        while (await logs.sample())[0] > 0:
            if time.perf_counter() - resumed > 600:
                raise RuntimeError("the persister did not drain in 600 s after its pause")
            await asyncio.sleep(CEILING_SAMPLE_S)
        drain_s = time.perf_counter() - resumed
        if route.reserves:
            server.codes_left -= w.requests
        # what the backlog holds in requests: an event each, but a coalesced batch of reservations is
        # one event of many (counted by wrk's answers: the few still in flight at its end are not, so
        # the rate reads low, never high)
        units = w.requests if route.reserves else backlog
        timed = units >= MIN_DRAIN_EVENTS and drain_s >= 10 * CEILING_SAMPLE_S
        return {"crowd_per_s": w.per_s, "crowd_p99_ms": w.p99_ms, "events": backlog, "drain_s": drain_s,
                "per_s": backlog / drain_s if timed else None, "units": units,
                "units_per_s": units / drain_s if timed else None, "problems": w.problems or None}

    async def window(self, p: PathRun, design: str, tag: str, seconds: int, logs: Logs
                     ) -> tuple[Window, float, Lag, dict[str, float | None], dict[str, float]]:
        """One wrk window on one server: its result, the server's CPU us per request, the backlog
        over it, its neighbours' CPU us per request (Redis, PostgreSQL, the persister, wrk), and
        the shares of the machine's cores no process was charged for (``storecpu.unattributed``)."""
        server = p.servers[design]
        route = NOOP if design in NOOPS else PATHS[p.name].route
        await self.enough_codes(server, route, seconds)
        await logs.drained()  # the previous window's events are not this one's work
        lag, stop = Lag(), asyncio.Event()
        started = time.perf_counter()
        watcher = asyncio.create_task(watch(logs, lag, started, stop)) if design == "dropgate" else None
        assert self.store_cpu is not None
        stores_before = await self.store_cpu.read()
        before = cpu_s(server.proc.pid)
        w = await revisions.wrk(self.args, server, route, self.tmp / f"{p.name}-{design}.lua", tag, seconds)
        per = 1e6 / max(1, w.requests)  # seconds of CPU -> us per request
        cpu = (cpu_s(server.proc.pid) - before) * per
        spent = StoreCpu.spent(stores_before, await self.store_cpu.read())
        neighbours: dict[str, float | None] = {
            "redis": spent.redis_s * per, "persister": spent.persister_s * per,
            "postgres": None if spent.postgres_s is None else spent.postgres_s * per,
            "wrk": w.wrk_cores / w.per_s * 1e6 if w.per_s else 0.0}
        lag.crowd_s = time.perf_counter() - started
        if watcher is not None:
            stop.set()
            await asyncio.wait_for(watcher, timeout=600)
        if route.reserves:
            server.codes_left -= w.requests
            self.fastest_codes = max(self.fastest_codes, w.per_s)
        return w, cpu, lag, neighbours, spent.machine

    async def measure(self, paths: list[PathRun], logs: Logs, persister: Server) -> None:
        args = self.args
        self.store_cpu = StoreCpu(logs.redis, persister.proc.pid)
        if args.warmup:  # key caches, script loads, first connections, the JIT-less interpreter's caches
            for p in paths:
                for design in DESIGNS:
                    w, *_ = await self.window(p, design, f"{p.name[0]}w", args.warmup, logs)
                    print(f"warm-up {p.name:8s} {design:13s} {w.per_s:9,.0f}/s"
                          + (f"  ERRORS {w.problems}" if w.problems else ""), flush=True)
        for rnd in range(args.rounds):
            for p in paths:
                first = rnd % len(DESIGNS)
                order = DESIGNS[first:] + DESIGNS[:first]  # each design goes first in turn
                for design in order:
                    w, cpu, lag, neighbours, machine = await self.window(p, design, f"{p.name[0]}{rnd}",
                                                                         args.seconds, logs)
                    p.windows.setdefault(design, []).append(w)
                    p.machine.setdefault(design, []).append(machine)
                    p.cpu_us.setdefault(design, []).append(cpu)
                    p.neighbours_us.setdefault(design, []).append(neighbours)
                    extra = ""
                    if design == "dropgate":
                        p.lags.append(lag)
                        lag_s = lag.summary()
                        extra = (f"  backlog peak {lag_s['peak_backlog']:,.0f}, at the end "
                                 f"{lag_s['backlog_at_end']:,.0f}, drained {lag_s['drain_s']:.1f} s after")
                    errors = f"  ERRORS {w.problems}" if w.problems else ""
                    print(f"round {rnd + 1} {p.name:8s} {design:13s} {w.per_s:9,.0f}/s  p50 {w.p50_ms:7.1f} ms  "
                          f"p99 {w.p99_ms:7.1f} ms  CPU {cpu:5.0f} us/req (server {w.server_cores:.2f} cores, "
                          f"waiting {w.server_waiting:.2f}, wrk {w.wrk_cores:.2f}){extra}{errors}", flush=True)
        for p in paths:
            p.ceiling = c = await self.ceiling(p, persister, logs)
            print(f"persister {p.name:8s} paused for a crowd of {c['crowd_per_s']:,.0f} req/s: "
                  f"{c['events']:,.0f} events drained in {c['drain_s']:.2f} s after the resume"
                  f" = {_n(c['per_s'], ' events/s')}{_units(c)}"
                  + (f"  ERRORS {c['problems']}" if c['problems'] else ""),
                  flush=True)


# -- correctness ----------------------------------------------------------------------------------
async def correctness(args: argparse.Namespace, tmp: Path, dropgate: Server, settings: Settings, logs: Logs,
                      names: list[str]) -> dict[str, Any]:
    """A crowd on each scarce entity: exactly ``--scarce`` succeed; after the drain PostgreSQL equals
    Redis; ``dropgate reconcile`` exits 0."""
    n = args.scarce
    service = {"Authorization": f"Bearer {dropgate.key}"}
    out: dict[str, Any] = {"scarce": n, "paths": {}}
    connector = aiohttp.TCPConnector(limit=min(args.connections, 256))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        url = dropgate.url
        for name in names:
            if name == "offers":
                await revisions.post(http, url + "/v1/offers", service, json={
                    "offer_id": SCARCE_OFFER, "event_id": "drop", "name": "Scarce", "price": "25.00",
                    "currency": "usd", "inventory_total": n, "max_per_order": 3})
            elif name == "invites":
                await revisions.post(http, url + "/v1/invites", service, json={"code": SCARCE_CODE, "max_uses": n})
            elif name == "promos":
                await revisions.post(http, url + "/v1/promos", service, json={
                    "code": SCARCE_CODE, "bonus": {"kind": "percent", "percent": "12.5"}, "currency": "usd",
                    "max_uses": n})
            elif name == "codes":
                body = b"".join(b"S-%06d\n" % i for i in range(n))
                await revisions.post(http, f"{url}/v1/campaigns/{SCARCE_CAMPAIGN}/codes?type={CODE_TYPE}",
                                     {**service, "Content-Type": "text/csv"}, data=body)
        for name in names:
            out["paths"][name] = await crowd(http, url, dropgate.key, PATHS[name].scarce, 2 * n,
                                             min(args.connections, 256))
        out["drain_s"] = await logs.drained()
        redis_side: dict[str, dict[str, int]] = {}
        for name in names:
            if name == "offers":
                inv = {o: (await get(http, f"{url}/v1/offers/{o}", service))["inventory"]
                       for o in (SCARCE_OFFER, OFFER)}
                redis_side[name] = {o: v["reserved"] + v["sold"] for o, v in inv.items()}
            elif name == "invites":
                redis_side[name] = {c: (await get(http, f"{url}/v1/invites/{c}", service))["used_count"]
                                    for c in (SCARCE_CODE, INVITE)}
            elif name == "promos":
                redis_side[name] = {c: (await get(http, f"{url}/v1/promos/{c}", service))["times_used"]
                                    for c in (SCARCE_CODE, PROMO)}
            elif name == "codes":
                redis_side[name] = {c: (await get(http, f"{url}/v1/campaigns/{c}/codes/count?type={CODE_TYPE}",
                                                  service))["reserved"] for c in (SCARCE_CAMPAIGN, CAMPAIGN)}
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": str(settings.database_schema)})
    try:
        pg_side: dict[str, dict[str, int]] = {}
        for name in names:
            if name == "offers":
                rows = await conn.fetch("SELECT offer_id, reserved + sold AS n FROM offers WHERE tenant_id = $1",
                                        TENANT)
            elif name == "invites":
                rows = await conn.fetch("SELECT code AS offer_id, used_count AS n FROM invite_codes "
                                        "WHERE tenant_id = $1 AND used_count = (SELECT count(*) FROM "
                                        "invite_code_uses u WHERE u.tenant_id = $1 AND u.code = invite_codes.code)",
                                        TENANT)
            elif name == "promos":
                rows = await conn.fetch("SELECT code AS offer_id, times_used AS n FROM promo_codes "
                                        "WHERE tenant_id = $1 AND times_used = (SELECT count(*) FROM "
                                        "promo_code_uses u WHERE u.tenant_id = $1 AND u.code = promo_codes.code)",
                                        TENANT)
            else:
                rows = await conn.fetch("SELECT campaign_id AS offer_id, count(*) AS n FROM campaign_codes "
                                        "WHERE tenant_id = $1 AND status = 'reserved' GROUP BY campaign_id", TENANT)
            pg_side[name] = {r["offer_id"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()
    for name in names:
        scarce = {"offers": SCARCE_OFFER, "codes": SCARCE_CAMPAIGN}.get(name, SCARCE_CODE)
        entry = out["paths"][name]
        entry["redis"], entry["postgres"] = redis_side[name], {k: pg_side[name].get(k) for k in redis_side[name]}
        entry["oversold"] = max(0, redis_side[name][scarce] - n) + max(0, entry["succeeded"] - n)
        entry["exact"] = entry["succeeded"] == n == redis_side[name][scarce]
        entry["unexpected"] = {s: c for s, c in entry["statuses"].items() if s not in ("200", "201", "409")}
        entry["pg_equals_redis"] = entry["redis"] == entry["postgres"]
    env = settings_env(settings) | {"DROPGATE_PAYMENT_PROVIDER": "sandbox"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dropgate", "reconcile", "--no-progress", "--wait", "30", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    text, _ = await proc.communicate()
    out["reconcile_exit"] = proc.returncode
    out["reconcile_result"] = next((x for x in text.decode().splitlines()[::-1] if x.startswith("result:")),
                                   text.decode()[-500:])
    out["ok"] = (out["reconcile_exit"] == 0
                 and all(e["exact"] and e["pg_equals_redis"] and not e["oversold"] and not e["unexpected"]
                     for e in out["paths"].values()))
    return out


async def crowd(http: aiohttp.ClientSession, url: str, key: str, route: Route, requests: int,
                concurrency: int) -> dict[str, Any]:
    """``requests`` requests (a new user each) by ``concurrency`` callers, every answer counted: not wrk,
    which stops with requests in flight that the server still completes (and wrk never counts)."""
    head, _, tail = route.body.partition("@")
    counter = iter(range(requests))
    statuses: dict[str, int] = {}
    succeeded = 0

    async def caller() -> None:
        nonlocal succeeded
        for i in counter:
            user = f"scarce-{i}"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            if route.idempotent:
                headers["Idempotency-Key"] = f"k-{user}-{route.route}"  # a key is the tenant's, whatever the path
            body = head + user + tail if "@" in route.body else route.body
            async with http.post(url + route.route, data=body, headers=headers) as r:
                answer = await r.json(content_type=None)
                statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
                if 200 <= r.status < 300 and (not route.reserves or answer.get("codes")):
                    succeeded += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return {"requests": requests, "succeeded": succeeded, "statuses": statuses}


async def get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    async with http.get(url, headers=headers) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            raise SystemExit(f"GET {url} answered {r.status}: {body}")
        return body


# -- the run --------------------------------------------------------------------------------------
async def run(args: argparse.Namespace, s: Stores, tmp: Path) -> dict[str, Any]:
    names: list[str] = args.paths
    async with contextlib.AsyncExitStack() as stack:
        settings = await stack.enter_async_context(private_settings(s))
        base = await stack.enter_async_context(private_settings(s))
        env = settings_env(settings) | {"DROPGATE_PAYMENT_PROVIDER": "sandbox",
                                        "DROPGATE_TENANT_CONCURRENCY": str(revisions.TENANT_CONCURRENCY)}
        py = sys.executable
        # every process starts at once (the setup is a good share of a short run), each stopped with the stack
        dropgate = launch("dropgate", [py, "-m", "dropgate", "serve", "--host", "127.0.0.1", "--no-persister"],
                          env, tmp)
        persister = launch("persister", [*(["nice", "-n", str(args.persister_nice)] if args.persister_nice else []),
                                         py, "-m", "dropgate", "persister"],
                           env | args.persister_env, tmp, port=False)
        noop = launch("no-op", [py, "-m", "benchmarks.revisions", "--noop"], dict(os.environ), tmp)
        written = launch("written-no-op", [py, "-m", "benchmarks.revisions", "--noop", "--written"],
                         dict(os.environ), tmp)
        sql = launch("sql", [py, "-m", "benchmarks.hotpaths", "--serve-sql", s.database_url,
                             str(base.database_schema), str(args.codes)], dict(os.environ), tmp)
        offers_pg = launch("offers-pg", [py, "-m", "benchmarks.offers", "--serve", "--pg", s.database_url,
                                         str(base.database_schema), str(POOL_SIZE), "--inventory", "1000000000"],
                           dict(os.environ), tmp, ready_line=True)
        for server in (dropgate, persister, noop, written, sql, offers_pg):
            stack.callback(server.stop)
        failed = [e for e in await asyncio.gather(*(ready(x, tmp) for x in (dropgate, noop, written, sql,
                                                                            offers_pg)),
                                                  return_exceptions=True) if e is not None]
        if failed:
            raise failed[0]
        sql.codes_left = args.codes
        assert settings.admin_key is not None
        started = time.perf_counter()
        await revisions.prepare(dropgate, settings.admin_key, names, args.codes)
        if "promos" in names:
            async with aiohttp.ClientSession() as http:
                await revisions.post(http, dropgate.url + "/v1/promos", {"Authorization": f"Bearer {dropgate.key}"},
                                     json={"code": PROMO, "bonus": {"kind": "percent", "percent": "12.5"},
                                           "currency": "usd"})
        print(f"data set up in {time.perf_counter() - started:.1f} s", flush=True)
        paths = [PathRun(name, {"dropgate": dropgate, "baseline": offers_pg if name == "offers" else sql,
                              "no-op": noop, "written no-op": written}) for name in names]
        for p in paths:
            for design in DESIGNS:
                route = NOOP if design in NOOPS else PATHS[p.name].route
                (tmp / f"{p.name}-{design}.lua").write_text(lua_script(route))
        redis = Redis.from_url(s.redis_url)
        stack.push_async_callback(redis.aclose)
        logs = Logs(redis, settings)
        await Bench(args, s, tmp).measure(paths, logs, persister)
        check = await correctness(args, tmp, dropgate, settings, logs, names)
    return {"paths": [summarize(p) for p in paths], "correctness": check}


def summarize(p: PathRun) -> dict[str, Any]:
    noop, written = p.windows["no-op"], p.windows["written no-op"]
    designs: dict[str, Any] = {}
    for design in DESIGNS:
        ws = p.windows[design]
        designs[design] = {
            "name": PATHS[p.name].baseline if design == "baseline" else DESIGN_NAMES[design],
            "per_s": statistics.median(w.per_s for w in ws),
            "p50_ms": statistics.median(w.p50_ms for w in ws),
            "p99_ms": statistics.median(w.p99_ms for w in ws),
            "cpu_us": statistics.median(p.cpu_us[design]),
            "vs_noop": statistics.median(vs_noop := [w.per_s / n.per_s for w, n in zip(ws, noop, strict=True)]),
            "cpu_efficiency": statistics.median(efficiency := [
                n / c for c, n in zip(p.cpu_us[design], p.cpu_us["no-op"], strict=True)]),
            "p99_vs_noop": statistics.median(p99s := [w.p99_ms / n.p99_ms for w, n in zip(ws, noop, strict=True)]),
            # each round's three: how far one slow no-op round moves a median of three
            "rounds": {"vs_noop": vs_noop, "cpu_efficiency": efficiency, "p99_vs_noop": p99s},
            # the same three against the no-op that answers as dropgate does (JsonResponse)
            "vs_written": statistics.median(w.per_s / n.per_s for w, n in zip(ws, written, strict=True)),
            "cpu_efficiency_written": statistics.median(
                n / c for c, n in zip(p.cpu_us[design], p.cpu_us["written no-op"], strict=True)),
            "p99_vs_written": statistics.median(w.p99_ms / n.p99_ms for w, n in zip(ws, written, strict=True)),
            "rounds_per_s": [round(w.per_s) for w in ws],
            "server_cores": statistics.median(w.server_cores for w in ws),
            "server_waiting": statistics.median(w.server_waiting for w in ws),
            # the server's share of a core against the no-op's, window by window: with the
            # CPU efficiency, what the throughput ratio is made of (throughput = cores / CPU per request)
            "cores_vs_noop": statistics.median(w.server_cores / n.server_cores
                                               for w, n in zip(ws, noop, strict=True)),
            "wrk_cores": statistics.median(w.wrk_cores for w in ws),
            "neighbours_us": {k: _median([n[k] for n in p.neighbours_us[design]])
                              for k in ("redis", "persister", "postgres", "wrk")},
            "machine": {k: statistics.median(m[k] for m in p.machine[design])
                        for k in ("idle", "interrupts", "stolen")},
            "problems": [w.problems for w in ws if w.problems],
        }
    lags = [lag.summary() for lag in p.lags]
    persister: dict[str, Any] = {}
    for k in lags[0]:
        values = [v for lag in lags if (v := lag[k]) is not None]
        persister[k] = statistics.median(values) if values else None
    last = p.lags[-1]
    persister["series"] = [(round(t, 3), b) for t, b, _ in last.samples]
    persister["crowd_s"] = round(last.crowd_s, 3)
    # the crowd's rate in requests persisted (a reservation batch is one event of many)
    persister["crowd_units_per_s"] = (designs["dropgate"]["per_s"] if PATHS[p.name].route.reserves
                                      and persister["crowd_events_per_s"] is not None
                                      else persister["crowd_events_per_s"])
    # the paused window against the rounds' no-op: the API's rate with the persister's CPU elsewhere
    persister["ceiling"] = p.ceiling | {
        "crowd_vs_noop": p.ceiling["crowd_per_s"] / designs["no-op"]["per_s"],
        "crowd_p99_vs_noop": p.ceiling["crowd_p99_ms"] / designs["no-op"]["p99_ms"]}
    return {"path": p.name, "designs": designs, "persister": persister}


# -- report ---------------------------------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    lines = ["| path | design | req/s | / no-op | CPU us/req | CPU efficiency (no-op = 1) | p50 | p99 "
             "| p99 / no-op p99 | server cores: running, waiting for a core |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in result["paths"]:
        for design in DESIGNS:
            d = p["designs"][design]
            flag = " (**errors**)" if d["problems"] else ""
            lines.append(f"| {p['path']} | {d['name']}{flag} | {d['per_s']:,.0f} | {d['vs_noop']:.2f} "
                         f"| {d['cpu_us']:,.0f} | {d['cpu_efficiency']:.2f} | {d['p50_ms']:,.1f} ms "
                         f"| {d['p99_ms']:,.1f} ms | {d['p99_vs_noop']:.1f}x "
                         f"| {d['server_cores']:.2f}, {d['server_waiting']:.2f} |")
    lines += ["", "the machine's CPU per request (us) over the same windows: the server's, and its neighbours' on "
                  "these cores (Redis by its INFO, PostgreSQL's processes, the persister's process, wrk; on a "
                  "shared machine, with whatever else they served meanwhile):", "",
              "| path | design | server | Redis | persister | PostgreSQL | wrk | all |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in result["paths"]:
        for design in DESIGNS:
            d = p["designs"][design]
            nb = d["neighbours_us"]
            parts = [d["cpu_us"], *(nb[k] for k in ("redis", "persister", "postgres", "wrk"))]
            total = sum(v for v in parts if v is not None)
            lines.append(f"| {p['path']} | {d['name']} | " + " | ".join(_n(v) for v in parts)
                         + f" | {total:,.0f} |")
    lines += ["", "| path | crowd events/s | persisted/s during the crowd | peak backlog | backlog at the end "
              "| drained after | drain rate | paused persister: events, drained in, rate "
              "| the crowd meanwhile: req/s, / no-op, p99 / no-op p99 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in result["paths"]:
        q = p["persister"]
        c = q["ceiling"]
        lines.append(f"| {p['path']} | {_n(q['crowd_events_per_s'])} | {_n(q['persisted_per_s'])} "
                     f"| {q['peak_backlog']:,.0f} | {q['backlog_at_end']:,.0f} | {q['drain_s']:.1f} s "
                     f"| {_n(q['drain_per_s'], '/s')} | {c['events']:,.0f}, {c['drain_s']:.2f} s, "
                     f"{_n(c['per_s'], '/s')}{_units(c)}{' (**errors**)' if c['problems'] else ''} "
                     f"| {c['crowd_per_s']:,.0f}, {c['crowd_vs_noop']:.2f}, {c['crowd_p99_vs_noop']:.1f}x |")
    lines += ["", f"(events are log entries, not requests: a coalesced batch of reservations is one event, and "
                  f"the paused persister's rate on codes is also given in reservations, the target's unit. "
                  f"Drain rate: n/a unless at least {MIN_DRAIN_EVENTS:,} events were left at the end and took "
                  f"{MIN_DRAIN_S:.0f} s or more to clear: a smaller drain times the sampling ({SAMPLE_S} s) "
                  f"or the persister's polling, not its throughput. Paused persister: one more crowd of "
                  f"up to {CEILING_S} s with the persister stopped, then its backlog timed from the resume "
                  f"to empty; n/a under {MIN_DRAIN_EVENTS:,} events. The crowd meanwhile is one window, "
                  f"against the rounds' no-op medians: the API with the persister's and PostgreSQL's CPU "
                  f"off these cores, as when the persister runs on another host.)"]
    c = result["correctness"]
    lines += ["", f"correctness: a crowd on {c['scarce']:,} units per path, then the drain "
                  f"({c['drain_s']:.1f} s) and `dropgate reconcile`:"]
    for name, e in c["paths"].items():
        lines.append(f"- {name}: {e['succeeded']:,} of {e['requests']:,} requests succeeded (answers {e['statuses']}), "
                     f"oversold {e['oversold']}; PostgreSQL == Redis: {e['pg_equals_redis']} "
                     f"({e['postgres']} vs {e['redis']})")
    lines.append(f"- reconcile exit {c['reconcile_exit']} ({c['reconcile_result']}); "
                 f"{'OK: zero oversell, zero drift' if c['ok'] else 'FAILED'}")
    return "\n".join([*lines, "", *targets(result)])


def _units(ceiling: dict[str, Any]) -> str:
    """A paused crowd's backlog in requests, where its events each hold many (reservations)."""
    if ceiling["units"] == ceiling["events"]:
        return ""
    return f" ({ceiling['units']:,.0f} reservations: {_n(ceiling['units_per_s'], '/s')})"


def targets(result: dict[str, Any]) -> list[str]:
    """Issue #19's targets, met or not, from this run's figures."""
    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = ["issue #19's targets (dropgate against the no-op, same rounds):"]
    for p in result["paths"]:
        d = p["designs"]["dropgate"]
        r = d["rounds"]
        lines.append(f"- {p['path']}: throughput {d['vs_noop']:.2f}{spread(r['vs_noop'])} >= 0.6 "
                     f"{mark(d['vs_noop'] >= 0.6)}; CPU efficiency {d['cpu_efficiency']:.2f}"
                     f"{spread(r['cpu_efficiency'])} >= 0.75 {mark(d['cpu_efficiency'] >= 0.75)}; "
                     f"p99 {d['p99_vs_noop']:.1f}x{spread(r['p99_vs_noop'], 'x', 1)} <= 2x "
                     f"{mark(d['p99_vs_noop'] <= 2)}")
    # in requests persisted per second: an event each, a reservation batch's event many
    crowd = [q for p in result["paths"] if (q := p["persister"]["crowd_units_per_s"]) is not None]
    if crowd:
        bar = 1.5 * max(crowd)
        for p in result["paths"]:
            c = p["persister"]["ceiling"]
            rate = c["units_per_s"]
            if rate is None:
                lines.append(f"- persister on {p['path']}: n/a (its paused crowd left {c['events']:,.0f} events: "
                             f"this path's crowd appends too few to time)")
                continue
            held = (f" ({c['events']:,.0f} events of {c['units'] / max(1, c['events']):,.0f} reservations)"
                    if c["units"] != c["events"] else "")
            lines.append(f"- persister on {p['path']}: {rate:,.0f} requests/s after its pause{held} >= 1.5x the "
                         f"fastest crowd's {max(crowd):,.0f} requests/s = {bar:,.0f}: {mark(rate >= bar)}")
    else:
        lines.append("- persister: n/a (no crowd event rate: Redis before 7 has no entries-added)")
    lines.append(f"- zero oversell, zero drift, reconcile 0: {mark(result['correctness']['ok'])}")
    lines.append("")
    lines.append("what each throughput ratio is made of (throughput = the server's cores / its CPU per request, "
                 "so throughput / no-op = CPU efficiency x the server's cores / the no-op's; waiting = runnable "
                 "but not running, behind Redis, PostgreSQL, the persister and wrk on these cores):")
    for p in result["paths"]:
        d, n = p["designs"]["dropgate"], p["designs"]["no-op"]
        lines.append(f"- {p['path']}: CPU efficiency {d['cpu_efficiency']:.2f} x cores {d['cores_vs_noop']:.2f} "
                     f"(running {d['server_cores']:.2f}, waiting {d['server_waiting']:.2f}; the no-op "
                     f"{n['server_cores']:.2f}, {n['server_waiting']:.2f}) = throughput {d['vs_noop']:.2f}")
    lines += ["", *latency_parts(result)]
    lines += ["", *machine_bound(result)]
    lines.append("")
    lines.append("the same three against the no-op that answers as dropgate does (JsonResponse), not a target "
                 "of the issue: what dropgate costs above its own HTTP layer:")
    for p in result["paths"]:
        d = p["designs"]["dropgate"]
        lines.append(f"- {p['path']}: throughput {d['vs_written']:.2f}, CPU efficiency "
                     f"{d['cpu_efficiency_written']:.2f}, p99 {d['p99_vs_written']:.1f}x")
    return lines


def spread(rounds: list[float], unit: str = "", digits: int = 2) -> str:
    """A median's rounds, lowest to highest: the run's targets are medians of a few rounds,
    and one round of a slow no-op moves them (BENCHMARKS.md, "Five `make bench` runs")."""
    if len(rounds) < 2:
        return ""
    return f" (rounds {min(rounds):.{digits}f}{unit}-{max(rounds):.{digits}f}{unit})"


def latency_parts(result: dict[str, Any]) -> list[str]:
    """What each p99 ratio is made of: the queue the throughput sets, and the tail's shape.

    Why: wrk keeps ``connections`` requests in flight, so by Little's law a request's mean
    latency is connections / throughput, whatever the server does with it: a server at 0.5
    of the no-op's throughput answers in twice the no-op's time. So p99 / no-op's p99 =
    (p50 / no-op's p50, about no-op's throughput / this one's) x (this one's p99 / p50
    against the no-op's p99 / p50: its tail's own shape). A shape near 1 says batching adds
    no tail of its own, and the p99 target is then the throughput target again: p99 <= 2x
    asks for throughput >= shape / 2 of the no-op's. From the rounds' medians, so the
    product may differ from the median of the per-round p99 ratios."""
    connections = result.get("connections")
    lines = ["what each p99 ratio is made of (wrk holds a fixed number of requests in flight, so by Little's "
             "law a request waits connections / throughput on average: p99 / no-op's = p50 / no-op's, about "
             "the inverse of the throughput ratio, x the tail's shape, p99 / p50 against the no-op's; from "
             "the medians of the rounds):"]
    for p in result["paths"]:
        d, n = p["designs"]["dropgate"], p["designs"]["no-op"]
        p50_ratio = d["p50_ms"] / n["p50_ms"]
        shape = (d["p99_ms"] / d["p50_ms"]) / (n["p99_ms"] / n["p50_ms"])
        little = f"; Little's law: {connections * 1000 / d['per_s']:,.1f} ms" if connections else ""
        lines.append(f"- {p['path']}: p50 {d['p50_ms']:,.1f} ms{little}; p50 / no-op's {p50_ratio:.2f} (1 / "
                     f"throughput ratio {1 / d['vs_noop']:.2f}) x shape {shape:.2f} = p99 / no-op's "
                     f"{p50_ratio * shape:.1f}x; p99 <= 2x asks for throughput >= {shape / 2:.2f} of the no-op's")
    return lines


def machine_bound(result: dict[str, Any]) -> list[str]:
    """What the machine's cores allow each path, from this run's CPU per request.

    Why: the server shares the machine's cores with Redis, PostgreSQL, the persister and
    wrk, so dropgate's throughput is at most cores / (all the CPU one request costs them
    together), whatever its own CPU efficiency; the no-op has almost no neighbours. So
    0.6 of the no-op's throughput caps that sum, at the share of the bound this run
    reached (no window keeps every core busy); less the server's CPU at #19's efficiency
    target, the rest is what its neighbours may take. What the bound's share left over went
    to, over the same windows: the cores idle, stolen by a hypervisor, and, the rest, other
    processes; and of the path's own share, the part in interrupts (the loopback sockets'
    network work, charged by the tick to whichever process it interrupted)."""
    cores = result.get("cores") or os.cpu_count() or 1
    lines = [f"the machine's bound on {cores} cores (throughput <= the cores / all the CPU a request costs: the "
             "server's and its neighbours', the table above); what 0.6 of the no-op's throughput asks of that CPU:"]
    for p in result["paths"]:
        d, n = p["designs"]["dropgate"], p["designs"]["no-op"]
        neighbours = d["neighbours_us"]
        if any(v is None for v in neighbours.values()):
            lines.append(f"- {p['path']}: n/a (a neighbour's CPU was not measured: {neighbours})")
            continue
        around = sum(neighbours.values())
        everything = d["cpu_us"] + around
        bound = cores * 1e6 / everything
        reached = d["per_s"] / bound
        allowed = cores * 1e6 / (0.6 * n["per_s"])  # all the CPU per request 0.6 of the no-op allows
        server_at_target = n["cpu_us"] / 0.75
        lines.append(
            f"- {p['path']}: {everything:,.0f} us per request in all, so at most {bound:,.0f}/s = "
            f"{bound / n['per_s']:.2f} of the no-op; dropgate reached {reached:.2f} of that bound. 0.6 of the "
            f"no-op allows {allowed:,.0f} us in all, {reached * allowed:,.0f} at this share: with the server at "
            f"CPU efficiency 0.75 ({server_at_target:,.0f} us, now {d['cpu_us']:,.0f}), its neighbours "
            f"{reached * allowed - server_at_target:,.0f} us (now {around:,.0f})")
        m = d["machine"]
        lines.append(f"  - the cores over dropgate's windows: {reached:.2f} this request path's (of it "
                     f"{m['interrupts']:.2f} in interrupts), idle {m['idle']:.2f}, stolen {m['stolen']:.2f}, "
                     f"other processes {1 - reached - m['idle'] - m['stolen']:.2f}")
    return lines


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _n(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.0f}{unit}"


def charts(result: dict[str, Any], out: Path) -> list[Path]:
    """Throughput, p50/p99 and the persister backlog over time, one PNG each, plus the three in one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [p["path"] for p in result["paths"]]
    colors = {"dropgate": "#1f77b4", "baseline": "#d62728", "no-op": "#7f7f7f", "written no-op": "#bcbd22"}
    width = 0.2

    def label(design: str) -> str:
        return "source design" if design == "baseline" else DESIGN_NAMES[design]

    def throughput(ax: Any) -> None:
        for i, design in enumerate(DESIGNS):
            values = [p["designs"][design]["per_s"] for p in result["paths"]]
            bars = ax.bar([x + (i - 1.5) * width for x in range(len(paths))], values, width, label=label(design),
                          color=colors[design])
            if design != "no-op":  # the written no-op's label: its own ratio to aiohttp's
                ax.bar_label(bars, [f"{p['designs'][design]['vs_noop']:.2f}" for p in result["paths"]], fontsize=7)
        ax.set_xticks(range(len(paths)), [f"{p}\n" + p_["designs"]["baseline"]["name"].replace(" + ", "\n+ ")
                                          for p, p_ in zip(paths, result["paths"], strict=True)], fontsize=8)
        ax.set_ylabel("requests/s")
        ax.margins(y=0.15)  # room for the bars' labels under the legend
        ax.set_title("throughput (labels: / no-op)")
        ax.legend(fontsize=8)

    def latency(ax: Any) -> None:
        for i, design in enumerate(DESIGNS):
            xs = [x + (i - 1.5) * width for x in range(len(paths))]
            ax.bar(xs, [p["designs"][design]["p99_ms"] for p in result["paths"]], width, color=colors[design],
                   alpha=0.45, label=f"{label(design)} p99")
            ax.bar(xs, [p["designs"][design]["p50_ms"] for p in result["paths"]], width, color=colors[design],
                   label=f"{label(design)} p50")
        ax.set_yscale("log")
        top = max(p["designs"][d]["p99_ms"] for p in result["paths"] for d in DESIGNS)
        ax.set_ylim(top=top * 8)  # room for the legend above the bars
        ax.set_xticks(range(len(paths)), paths)
        ax.set_ylabel("ms (log)")
        ax.set_title("latency: p50 (solid), p99 (light)")
        ax.legend(fontsize=7, ncol=3)

    def lag(ax: Any) -> None:
        for p in result["paths"]:
            series = p["persister"]["series"]
            ax.plot([t for t, _ in series], [b for _, b in series], label=p["path"])
        ends = [p["persister"]["crowd_s"] for p in result["paths"]]
        ax.axvline(statistics.median(ends), color="black", linestyle=":", linewidth=1, label="crowd ends")
        ax.set_xlabel("seconds since the crowd began (last round)")
        ax.set_ylabel("unpersisted events")
        ax.set_title("persister backlog during and after the crowd")
        ax.legend(fontsize=8)

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("throughput", throughput), ("latency", latency), ("persister-lag", lag)):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        draw(ax)
        fig.tight_layout()
        written.append(out / f"hotpaths-{name}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for ax, draw in zip(axes, (throughput, latency, lag), strict=True):
        draw(ax)
    fig.suptitle(result["title"], fontsize=10)
    fig.tight_layout()
    written.append(out / "hotpaths.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def main(args: argparse.Namespace) -> int:
    for k in ("REDIS_URL", "DATABASE_URL"):  # the machine's services when given
        if os.environ.get(f"DROPGATE_{k}") and not os.environ.get(f"DROPGATE_BENCH_{k}"):
            os.environ[f"DROPGATE_BENCH_{k}"] = os.environ[f"DROPGATE_{k}"]
    ensure_wrk()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout
    command = shlex.join([".venv/bin/python", "-m", "benchmarks.hotpaths", *sys.argv[1:]])
    load_start = os.getloadavg()[0]
    speed_start = host_speed_us()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"command: {command}\nmachine: {os.cpu_count()} cores, load average {load_start:.2f} at start, "
          f"host speed {speed_start:.1f} us (sum(range(1000)); a fast host: {FAST_HOST_US}), {halt_poll()}, "
          f"{when}; {wrk_version.split(' [')[0]} -t{args.threads} -c{args.connections}; {args.rounds} rounds of "
          f"{args.seconds} s per server and path", flush=True)
    s = stores()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="dropgate-hotpaths-") as tmp:
            result = asyncio.run(run(args, s, Path(tmp)))
    finally:
        if s.stack is not None:
            s.stack.close()
    load_end = os.getloadavg()[0]
    speed_end = host_speed_us()
    result |= {"command": command, "when": when, "cores": os.cpu_count(), "load_average": [load_start, load_end],
               "host_speed_us": [round(speed_start, 2), round(speed_end, 2)], "halt_poll": halt_poll(),
               "seconds": args.seconds, "rounds": args.rounds, "connections": args.connections,
               "threads": args.threads, "elapsed_s": round(time.perf_counter() - started, 1),
               "title": f"dropgate hot paths under wrk -c{args.connections}, {when}, {os.cpu_count()} cores, "
                        f"load {load_start:.1f}-{load_end:.1f}; medians of {args.rounds} rounds"}
    print(f"\n{args.rounds} rounds of {args.seconds} s per server and path, wrk -t{args.threads} "
          f"-c{args.connections}; medians of the rounds, ratios as medians of the per-round ratios; "
          f"load average {load_start:.2f} at start, {load_end:.2f} at the end; host speed "
          f"{speed_start:.1f} us at start, {speed_end:.1f} at the end (a fast host: {FAST_HOST_US}); "
          f"{result['elapsed_s']:.0f} s in all\n")
    print(table(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hotpaths.json").write_text(json.dumps(result, indent=1) + "\n")
    for png in charts(result, out):
        print(f"wrote {png}")
    clean = not any(d["problems"] for p in result["paths"] for d in p["designs"].values()) and not any(
        p["persister"]["ceiling"]["problems"] for p in result["paths"])
    if not clean:
        print("FLAGGED: some requests did not succeed (see the table); these figures do not compare")
    return 0 if clean and result["correctness"]["ok"] else 1


def persister_env(pairs: list[str]) -> dict[str, str]:
    """``--persister-env`` values as environment variables: each a ``DROPGATE_`` setting for
    the persister's process alone (the API and the no-ops keep the run's settings)."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("DROPGATE_"):
            raise ValueError(f"{pair!r} is not DROPGATE_NAME=VALUE")
        env[name] = value
    return env


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the figures are their medians)")
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per window (whole seconds)")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per server and path (0: none)")
    parser.add_argument("--codes", type=int, default=200_000, help="codes per upload (topped up as needed)")
    parser.add_argument("--scarce", type=int, default=500, help="units of each scarce entity of the correctness check")
    parser.add_argument("--keys", action="store_true",
                        help="an Idempotency-Key on every dropgate request, as dropgate's client sends "
                             "(default: on the purchase alone, whose contract asks for one)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"),
                        help="folder for the PNGs and hotpaths.json")
    parser.add_argument("--persister-env", action="append", default=[], metavar="DROPGATE_NAME=VALUE",
                        help="a setting of the persister's process alone (repeatable), e.g. "
                             "DROPGATE_PERSISTER_PIPELINE=false")
    parser.add_argument("--persister-nice", type=int, default=0, metavar="N",
                        help="start the persister under `nice -n N` (0: as the others): how much its "
                             "share of the cores costs the API")
    args = parser.parse_args(argv)
    try:
        args.persister_env = persister_env(args.persister_env)
    except ValueError as exc:
        parser.error(f"--persister-env: {exc}")
    if not 0 <= args.persister_nice <= 19:
        parser.error("--persister-nice: 0 to 19")
    if args.keys:
        with_keys()
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not args.paths or any(p not in PATHS for p in args.paths) or len(set(args.paths)) != len(args.paths):
        parser.error(f"--paths: a comma-separated subset of {', '.join(PATHS)}")
    if args.rounds < 1 or args.seconds < 1 or args.connections < 1 or args.scarce < 1:
        parser.error("--rounds, --seconds, --connections and --scarce must be at least 1")
    return args


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-sql":
        port = int(sys.argv[sys.argv.index("--port") + 1])
        serve_sql(port, sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main(parse(sys.argv[1:])))
