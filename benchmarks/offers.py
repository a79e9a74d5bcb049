"""Offer purchases per second through HTTP on one hot offer, 1,000 concurrent clients.

    .venv/bin/python -m benchmarks.offers [--runs 3] [--seconds 3] [--clients 1000]
        [--workers 1,2] [--pg-pools 10,20] [--batch-sizes 64,128]

Servers, each in processes of its own, measured in turns within each run (so the
ratios come from the same minutes of a noisy machine):

- ``noop``: the dropgate server's own no-op JSON POST (same app, same middleware, same
  processes): the ceiling of the HTTP layer;
- ``dropgate``: ``POST /v1/offers/hot/purchase`` with an Idempotency-Key, a new user
  per request (so every request passes its rate limit and takes a hold); the sandbox
  payment provider (no network); concurrent holds coalesced into one script call.
  ``--workers 1,2`` runs one such server per count, its processes sharing the port
  as ``dropgate serve --workers N`` does (SO_REUSEPORT), each with its own no-op;
- ``pg``: the source document's design behind a bare aiohttp app (one process):
  ``SELECT ... FOR UPDATE`` on the offer row, then insert the purchase, in one
  transaction. ``--pg-pools 10,20`` runs one per asyncpg pool size, and the ratios
  are taken against the fastest of them in each run: the baseline at its best.

The load generator is a raw HTTP/1.1 keep-alive client (asyncio protocols on uvloop,
one request in flight per connection), cheap enough that the servers, not it, are
measured. A separate round sells 500 units to 2,000 requests on each design and
checks for oversell. The write-behind persister is off while dropgate is measured (it
is a separate, deferrable process in a drop); the time it then takes to drain the
run's events into PostgreSQL is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from benchmarks.common import Stores, free_port, private_settings, stores
from dropgate.cli.loop import event_loop_runner
from dropgate.gcsettings import tune_gc

_HOT = "hot"


# -- servers (each runs in its own process) ------------------------------------------------
async def _noop(request: web.Request) -> web.Response:
    body = msgspec.json.decode(await request.read())
    return web.Response(body=msgspec.json.encode({"ok": True, "user_id": body.get("user_id")}),
                        status=201, content_type="application/json")


async def serve_dropgate(port: int, settings_json: str, inventory: int, attach: str | None) -> None:
    """One dropgate API process; ``attach``: the key of a first process whose tenant and
    offer this one serves too (another worker on the same port)."""
    from dropgate.http.app import create_app
    from dropgate.runtime import open_runtime
    from dropgate.settings import Settings

    settings = msgspec.json.decode(settings_json, type=Settings)
    async with open_runtime(settings, run_persister=False) as rt:
        if attach:
            key = attach
        else:
            await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
            _, key = await rt.api_keys.create(role="service", tenant_id="bench")
            await rt.offers.create("bench", offer_id=_HOT, event_id="drop", name="Hot", price_minor=2500,
                                   currency="usd", total=inventory, max_per_order=3, expires_at_ms=None,
                                   active=True)
        app = create_app(rt)
        app.router.add_post("/bench/noop", _noop)
        await _run_app(app, port, key)


async def serve_pg(port: int, database_url: str, schema: str, pool_size: int, inventory: int) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=pool_size, max_size=pool_size,
                                     server_settings={"search_path": schema})
    async with pool.acquire() as conn:
        await conn.execute("""
            CREATE TABLE bench_offers (offer_id text PRIMARY KEY, total integer NOT NULL,
                                       sold integer NOT NULL DEFAULT 0);
            CREATE TABLE bench_purchases (purchase_id text PRIMARY KEY, offer_id text NOT NULL,
                                          user_id text NOT NULL, quantity integer NOT NULL,
                                          created_at timestamptz NOT NULL DEFAULT now());
            CREATE INDEX ON bench_purchases (user_id);""")
        await conn.execute("INSERT INTO bench_offers VALUES ($1, $2)", _HOT, inventory)

    async def purchase(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        quantity = int(body["quantity"])
        purchase_id = uuid.uuid4().hex
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT total, sold FROM bench_offers WHERE offer_id = $1 FOR UPDATE",
                                      request.match_info["offer_id"])
            if row is None:
                return web.json_response({"code": "NOT_FOUND"}, status=404)
            if row["total"] - row["sold"] < quantity:
                return web.json_response({"code": "INSUFFICIENT_INVENTORY"}, status=409)
            await conn.execute("UPDATE bench_offers SET sold = sold + $2 WHERE offer_id = $1",
                               request.match_info["offer_id"], quantity)
            await conn.execute("INSERT INTO bench_purchases (purchase_id, offer_id, user_id, quantity) "
                               "VALUES ($1, $2, $3, $4)", purchase_id, request.match_info["offer_id"],
                               body["user_id"], quantity)
        return web.json_response({"purchase_id": purchase_id, "status": "pending"}, status=201)

    app = web.Application()
    app.router.add_post("/v1/offers/{offer_id}/purchase", purchase)
    await _run_app(app, port, "none")


async def _run_app(app: web.Application, port: int, key: str) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096, reuse_port=True)
    await site.start()
    tune_gc()  # what `dropgate serve` does, for every server of this benchmark alike
    print(f"READY {key}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    profile = os.environ.get("DROPGATE_BENCH_PROFILE")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        await stop.wait()
        prof.disable()
        prof.dump_stats(f"{profile}.{port}")
    else:
        await stop.wait()
    await runner.cleanup()


# -- the load generator --------------------------------------------------------------------
@dataclass
class Window:
    start: float = 0.0
    end: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    stopped: bool = False
    total: int = 0  # every response, warm-up included (for CPU per request)


class _Client(asyncio.Protocol):
    """One keep-alive connection sending requests back to back."""

    def __init__(self, make: Any, window: Window, idx: int, limit: int | None,
                 done: asyncio.Future[None]) -> None:
        self._make, self._window, self._idx, self._limit, self._done = make, window, idx, limit, done
        self._n = 0
        self._buf = b""
        self._sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def send(self) -> None:
        if self._window.stopped or (self._limit is not None and self._n >= self._limit):
            if not self._done.done():
                self._done.set_result(None)
            return
        assert self.transport is not None
        self._sent = time.perf_counter()
        self.transport.write(self._make(self._idx, self._n))
        self._n += 1

    def data_received(self, data: bytes) -> None:
        self._buf += data
        head_end = self._buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self._buf[:head_end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self._buf) < head_end + 4 + length:
            return
        self._buf = self._buf[head_end + 4 + length:]
        now = time.perf_counter()
        w = self._window
        w.total += 1
        status = int(head[9:12])
        if w.start <= now <= w.end or self._limit is not None:
            w.latencies.append(now - self._sent)
            w.statuses[status] = w.statuses.get(status, 0) + 1
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(ConnectionError(f"connection lost: {exc!r}"))


async def load(port: int, make: Any, *, clients: int, seconds: float = 0.0, warmup: float = 0.5,
               per_client: int | None = None) -> Window:
    """``clients`` connections; for ``seconds`` (after ``warmup``), or ``per_client`` requests each."""
    loop = asyncio.get_running_loop()
    window = Window()
    dones: list[asyncio.Future[None]] = []
    conns: list[_Client] = []
    for i in range(clients):
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            lambda i=i, done=done: _Client(make, window, i, per_client, done), "127.0.0.1", port)
        conns.append(proto)
        dones.append(done)
    began = time.perf_counter()
    window.start, window.end = began + warmup, began + warmup + seconds
    for c in conns:
        c.send()
    if per_client is None:
        await asyncio.sleep(warmup + seconds)
        window.stopped = True
        window.end = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*dones), timeout=60)
        window.end = min(window.end, began + warmup + seconds)
    else:
        await asyncio.wait_for(asyncio.gather(*dones), timeout=300)
        window.start, window.end = began, time.perf_counter()
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return window


def _request(path: str, key: str, body: bytes, idem: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + (b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b"")
            + (b"Idempotency-Key: " + idem + b"\r\n" if idem else b"")
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def purchase_maker(key: str, tag: str, quantity: Any = 1) -> Any:
    path = f"/v1/offers/{_HOT}/purchase"

    def make(client: int, n: int) -> bytes:
        user = f"{tag}{client}x{n}".encode()
        q = quantity(client, n) if callable(quantity) else quantity
        return _request(path, key, b'{"user_id":"' + user + b'","quantity":' + str(q).encode() + b"}",
                        idem=b"k-" + user)
    return make


def noop_maker() -> Any:
    def make(client: int, n: int) -> bytes:
        return _request("/bench/noop", "", f'{{"user_id":"u{client}x{n}","quantity":1}}'.encode())
    return make


# -- orchestration -------------------------------------------------------------------------
class Server:
    """One server: ``workers`` processes on one port (SO_REUSEPORT), the first one setting
    up what they serve."""

    def __init__(self, args: list[str], workers: int = 1) -> None:
        self.port = free_port()
        self.procs: list[subprocess.Popen[str]] = []
        self.key = self._spawn(args)
        for _ in range(workers - 1):
            self._spawn([*args, "--attach", self.key])

    def _spawn(self, args: list[str]) -> str:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.offers", "--serve", *args,
                                 "--port", str(self.port)], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}")
        return line.split(" ", 1)[1]

    def cpu_s(self) -> float:
        return sum(cpu_s(proc.pid) for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(60)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(w: Window) -> tuple[float, float]:
    ok = sum(w.statuses.values())
    lat = sorted(w.latencies)
    return ok / (w.end - w.start), (lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else 0.0)


async def correctness(s: Stores, clients: int, workers: int, pg_pool: int) -> dict[str, Any]:
    """500 units, 2,000 requests of 1-3 units: nobody oversells (dropgate on ``workers``
    processes)."""
    out: dict[str, Any] = {}
    qty = lambda c, n: 1 + (c + n) % 3  # noqa: E731
    async with private_settings(s, tenant_concurrency=100_000, tenant_admission=100_000,
                                persister_enabled=False) as settings:
        dg = Server(["--dropgate", msgspec.json.encode(settings).decode(), "--inventory", "500"], workers)
        pg = Server(["--pg", s.database_url, str(settings.database_schema), str(pg_pool), "--inventory", "500"])
        try:
            per_client = max(1, 2000 // clients)
            w = await load(dg.port, purchase_maker(dg.key, "c", qty), clients=min(clients, 2000),
                           per_client=per_client)
            from redis.asyncio import Redis

            from dropgate.engine.keys import Keys
            redis = Redis.from_url(s.redis_url)
            key = Keys(settings.key_prefix, settings.partitions).tenant("bench").offer(_HOT)
            total, reserved, sold = (int(x) for x in await redis.hmget(key, "total", "reserved", "sold"))
            await redis.aclose()
            out[f"dropgate x{workers}"] = {"statuses": w.statuses, "held+sold": reserved + sold, "total": total,
                                           "oversold": max(0, reserved + sold - total)}
            w = await load(pg.port, purchase_maker("", "c", qty), clients=min(clients, 2000),
                           per_client=per_client)
            conn = await asyncpg.connect(s.database_url, server_settings={"search_path": str(settings.database_schema)})
            sold_pg = await conn.fetchval("SELECT sold FROM bench_offers")
            rows = await conn.fetchval("SELECT COALESCE(SUM(quantity), 0) FROM bench_purchases")
            await conn.close()
            out["pg"] = {"statuses": w.statuses, "sold": sold_pg, "rows": rows,
                         "oversold": max(0, sold_pg - 500)}
        finally:
            dg.stop()
            pg.stop()
    return out


@dataclass(frozen=True)
class Design:
    """One dropgate server of the run: its worker count and purchase batch size."""

    workers: int
    batch_size: int | None

    @property
    def name(self) -> str:
        return ("dropgate" + (f"@{self.batch_size}" if self.batch_size else "")
                + (f" x{self.workers}" if self.workers > 1 else ""))

    @property
    def noop(self) -> str:
        return "noop" + (f" x{self.workers}" if self.workers > 1 else "")


async def main(runs: int, seconds: float, clients: int, workers: list[int], pg_pools: list[int],
               batch_sizes: list[int]) -> None:
    s = stores()
    designs = [Design(w, b) for w in workers for b in (batch_sizes or [None])]
    noops = {d.noop: d for d in designs}  # one no-op per worker count, on its first server
    pgs = [f"pg pool {p}" for p in pg_pools]
    names = [*noops, *(d.name for d in designs), *pgs]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    redis_us: dict[str, list[float]] = {d.name: [] for d in designs}  # the instance may be shared
    from redis.asyncio import Redis

    redis = Redis.from_url(s.redis_url)

    async def redis_cpu_s() -> float:
        info = await redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    loop = os.environ.get("DROPGATE_EVENT_LOOP") or "auto"
    print(f"offers benchmark: {clients} concurrent clients, {runs} runs of {seconds}s per server, "
          f"servers on the {loop!r} event loop (DROPGATE_EVENT_LOOP), {os.cpu_count()} cores")
    print("correctness round:", await correctness(s, clients, max(workers), pg_pools[0]))
    inventory = 1_000_000_000
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, Server] = {}
        first_settings = None
        for design in designs:
            extra = {"purchase_batch_size": design.batch_size} if design.batch_size else {}
            one = await stack.enter_async_context(private_settings(
                s, tenant_concurrency=100_000, tenant_admission=100_000, persister_enabled=False,
                redis_max_connections=64, **extra))
            first_settings = first_settings or one
            servers[design.name] = Server(["--dropgate", msgspec.json.encode(one).decode(),
                                           "--inventory", str(inventory)], design.workers)
            stack.callback(servers[design.name].stop)
        for noop, design in noops.items():
            servers[noop] = servers[design.name]
        for name, pool_size in zip(pgs, pg_pools, strict=True):
            schema = await stack.enter_async_context(private_settings(s))
            servers[name] = Server(["--pg", s.database_url, str(schema.database_schema), str(pool_size),
                                    "--inventory", str(inventory)])
            stack.callback(servers[name].stop)
        assert first_settings is not None
        try:
            for run in range(runs):
                for name in names:
                    server = servers[name]
                    make = noop_maker() if name in noops else purchase_maker(server.key, f"r{run}u")
                    cpu_before, redis_before = server.cpu_s(), await redis_cpu_s()
                    w = await load(server.port, make, clients=clients, seconds=seconds)
                    cpu_us[name].append((server.cpu_s() - cpu_before) * 1e6 / max(1, w.total))
                    if name in redis_us:
                        redis_us[name].append((await redis_cpu_s() - redis_before) * 1e6 / max(1, w.total))
                    bad = {k: v for k, v in w.statuses.items() if k != 201}
                    if bad:
                        raise RuntimeError(f"{name}: unexpected statuses {w.statuses}")
                    results[name].append(_summary(w))
                    print(f"  run {run + 1} {name:14s} {results[name][-1][0]:9,.0f}/s  "
                          f"p99 {results[name][-1][1]:7.1f} ms  server CPU {cpu_us[name][-1]:5.0f} us/request"
                          + (f"  Redis CPU {redis_us[name][-1]:3.0f} us/request" if name in redis_us else ""),
                          flush=True)
        finally:  # the servers stop with the stack (after the drain: they are idle by then)
            await redis.aclose()
        # drain the write-behind log of everything the first dropgate server sold, and
        # check PostgreSQL
        from dropgate.runtime import open_runtime

        async with open_runtime(first_settings, run_persister=False) as rt:
            lag = sum((await rt.new_persister().lag()).values())
            started = time.perf_counter()
            await rt.new_persister(name="bench-drain").drain(timeout_s=600)
            drain_s = time.perf_counter() - started
            state = await rt.offers.read("bench", _HOT)
            row = await rt.pool.fetchrow("SELECT reserved, sold FROM offers WHERE offer_id = $1", _HOT)
    print("\nsummary (medians)")
    for name in names:
        vs = results[name]
        print(f"  {name:14s} {statistics.median(v[0] for v in vs):9,.0f}/s   p99 "
              f"{statistics.median(v[1] for v in vs):7.1f} ms   server CPU "
              f"{statistics.median(cpu_us[name]):4.0f} us/request   runs: "
              + ", ".join(f"{r:,.0f}" for r, _ in vs))
    # the baseline at its best: the fastest pool size of each run
    best_pg = [max(results[name][run][0] for name in pgs) for run in range(runs)]
    for design in designs:
        name = design.name
        print(f"  {name}:")
        print(f"    Redis CPU per purchase: median {statistics.median(redis_us[name]):.0f} us "
              "(the whole instance's CPU over the window: includes any other client of it)")
        print(f"    server CPU per request, {design.noop} / {name}: median "
              f"{statistics.median(n / d for n, d in zip(cpu_us[design.noop], cpu_us[name], strict=True)):.2f}"
              " (the throughput ratio a CPU-bound server would reach)")
        ratios_pg = [d[0] / p for d, p in zip(results[name], best_pg, strict=True)]
        ratios_noop = [d[0] / n[0] for d, n in zip(results[name], results[design.noop], strict=True)]
        print(f"    / fastest pg FOR UPDATE: median {statistics.median(ratios_pg):.1f}x "
              f"(per run: {', '.join(f'{r:.1f}' for r in ratios_pg)})")
        for pg in pgs if len(pgs) > 1 else []:
            per = [d[0] / p[0] for d, p in zip(results[name], results[pg], strict=True)]
            print(f"    / {pg}: median {statistics.median(per):.1f}x")
        print(f"    / {design.noop} POST: median {statistics.median(ratios_noop):.2f} "
              f"(per run: {', '.join(f'{r:.2f}' for r in ratios_noop)})")
    print(f"  write-behind drain ({designs[0].name}): {lag:,} events in {drain_s:.1f}s "
          f"({lag / max(drain_s, 1e-9):,.0f} events/s); "
          f"PostgreSQL reserved {row['reserved']:,} == Redis {state.reserved:,}: {row['reserved'] == state.reserved}")


def _serve(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true")
    p.add_argument("--dropgate")
    p.add_argument("--attach")
    p.add_argument("--pg", nargs=3)
    p.add_argument("--inventory", type=int)
    p.add_argument("--port", type=int)
    a = p.parse_args(argv)
    # every server on the loop `dropgate serve` would use (DROPGATE_EVENT_LOOP, default auto)
    run = event_loop_runner(os.environ.get("DROPGATE_EVENT_LOOP") or "auto")
    if a.dropgate:
        run(serve_dropgate(a.port, a.dropgate, a.inventory, a.attach))
    else:
        run(serve_pg(a.port, a.pg[0], a.pg[1], int(a.pg[2]), a.inventory))


def _counts(text: str, name: str) -> list[int]:
    try:
        counts = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise SystemExit(f"{name}: comma-separated whole numbers, not {text!r}") from None
    if any(c < 1 for c in counts):
        raise SystemExit(f"{name}: every value must be at least 1")
    return counts


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve(sys.argv[1:])
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        parser.add_argument("--runs", type=int, default=3)
        parser.add_argument("--seconds", type=float, default=3.0)
        parser.add_argument("--clients", type=int, default=1000)
        parser.add_argument("--workers", default="1,2",
                            help="comma-separated worker counts (API processes on the port, as "
                                 "`dropgate serve --workers N`): one dropgate server each, side by side")
        parser.add_argument("--pg-pools", default="10,20",
                            help="comma-separated asyncpg pool sizes of the FOR UPDATE design: one "
                                 "server each; ratios are taken against the fastest in each run")
        parser.add_argument("--batch-sizes", default="",
                            help="comma-separated DROPGATE_PURCHASE_BATCH_SIZE values: one dropgate "
                                 "server each, side by side (default: one, at the configured size)")
        args = parser.parse_args()
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        import uvloop  # the load generator too: less of the shared cores goes to it

        uvloop.run(main(args.runs, args.seconds, args.clients, _counts(args.workers, "--workers"),
                        _counts(args.pg_pools, "--pg-pools") or [10],
                        _counts(args.batch_sizes, "--batch-sizes")))
