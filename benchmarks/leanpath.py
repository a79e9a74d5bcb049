"""Does a leaner request path raise the no-op ceiling? (issue #19, item 4)

    .venv/bin/python -m benchmarks.leanpath [--rounds 5] [--seconds 5] [--connections 256]

Why: before moving hot routes off ``web.Application`` (router, middleware chain,
``on_response_prepare`` signal, the request/match-info objects), measure what the
application layer itself costs. Three no-op JSON POST servers, each its own process
with uvloop and ``tune_gc`` as ``dropgate serve`` runs, decode the body and answer
201 with a small JSON body:

- ``app``: ``web.Application`` with one route (the no-op of ``benchmarks.revisions``);
- ``app+mw``: the same with one pass-through ``@web.middleware`` and one
  ``on_response_prepare`` receiver (what every dropgate answer goes through, minus
  dropgate's own work);
- ``lowlevel``: aiohttp's low-level ``web.Server(handler)``: no router, no
  middleware, no signals;
- ``written``: ``app``, answering with dropgate's ``http/jsonresponse.py:
  JsonResponse`` (the same bytes as ``web.Response``, written in one piece) instead
  of ``web.Response``;
- ``protocol``: no aiohttp server at all: an ``asyncio.Protocol`` that feeds aiohttp's
  own C parser (``HttpRequestParser``: the same header and body parsing) and writes
  the same answer's bytes (status line, ``Content-Type``, ``Content-Length``,
  ``Date``, ``Server``) from ``data_received``: what is left of a request's cost
  without aiohttp's request objects, handler task and response writer (no keep-alive
  timer, no limits, no pipelining order: a measurement, not a server);
- ``protocol+task``: the same, answering from a task started per request (a hot
  route's handler awaits its batch, so it needs one).

Measured with wrk (one thread) in alternating windows of the same run; reported:
median requests/s and p99 per server, each against ``app``, and the server's CPU per
request (µs), which is what the ceiling is made of on a shared machine.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import free_port, serve_until_sigterm
from benchmarks.revisions import NOOP, Window, cpu_s, ensure_wrk, lua_script

KINDS = ("app", "app+mw", "lowlevel", "written", "protocol", "protocol+task")


def serve(kind: str, port: int) -> None:
    import msgspec
    import uvloop
    from aiohttp import web
    from aiohttp.typedefs import Handler

    def answer(raw: bytes) -> web.Response:
        body = msgspec.json.decode(raw)
        return web.Response(body=msgspec.json.encode({"ok": True, "user_id": body.get("user_id")}),
                            status=201, content_type="application/json")

    from dropgate.http.jsonresponse import JsonResponse

    async def noop(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/healthz":
            return web.Response(body=b'{"status":"ok"}', content_type="application/json")
        if kind == "written":
            body = msgspec.json.decode(await request.read())
            return JsonResponse(msgspec.json.encode({"ok": True, "user_id": body.get("user_id")}), 201)
        return answer(await request.read())

    @web.middleware
    async def passthrough(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    async def header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "noop"

    async def run() -> None:
        if kind.startswith("protocol"):
            await serve_protocol(kind == "protocol+task", port)
            return
        runner: web.BaseRunner
        if kind == "lowlevel":
            runner = web.ServerRunner(web.Server(noop, access_log=None))
        else:
            app = web.Application(middlewares=[passthrough] if kind == "app+mw" else [])
            if kind == "app+mw":
                app.on_response_prepare.append(header)
            app.router.add_post(NOOP.route, noop)
            app.router.add_get("/healthz", noop)
            runner = web.AppRunner(app, access_log=None)
        await serve_until_sigterm(runner, port)

    uvloop.run(run())


async def serve_protocol(task_per_request: bool, port: int) -> None:
    """The ``protocol`` kinds: aiohttp's C parser under a bare ``asyncio.Protocol``."""
    import asyncio
    import email.utils

    import msgspec
    from aiohttp._http_parser import HttpRequestParser  # type: ignore[import-not-found]
    from aiohttp.base_protocol import BaseProtocol

    from dropgate.gcsettings import tune_gc

    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()  # the answers under way (a task is kept till done)
    date = [0, b""]

    def head(status: bytes, length: int) -> bytes:
        now = int(time.time())
        if now != date[0]:
            date[0], date[1] = now, email.utils.formatdate(now, usegmt=True).encode()
        return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(length).encode() + b"\r\nDate: " + bytes(date[1])
                + b"\r\nServer: noop\r\n\r\n")

    class Noop(BaseProtocol):
        def __init__(self) -> None:
            super().__init__(loop)
            self._parser = HttpRequestParser(self, loop, 2**16)

        def data_received(self, data: bytes) -> None:
            messages, _, _ = self._parser.feed_data(data)
            for message, payload in messages:
                if task_per_request or not payload.is_eof():  # a body still arriving is awaited
                    task = loop.create_task(self.answer_later(message.path, payload))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    self.answer(message.path, payload.read_nowait(-1))

        async def answer_later(self, path: str, payload: Any) -> None:
            self.answer(path, await payload.read())

        def answer(self, path: str, raw: bytes) -> None:
            assert self.transport is not None
            if path == "/healthz":
                body = b'{"status":"ok"}'
                self.transport.write(head(b"200 OK", len(body)) + body)
                return
            got = msgspec.json.decode(raw)
            body = msgspec.json.encode({"ok": True, "user_id": got.get("user_id")})
            self.transport.write(head(b"201 Created", len(body)) + body)

    server = await loop.create_server(Noop, "127.0.0.1", port, backlog=4096)
    tune_gc()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.leanpath", "--serve", kind, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/healthz"],
                              capture_output=True, text=True)
        if done.stdout == "200":
            return proc, url
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{kind} did not start")


def window(args: argparse.Namespace, proc: subprocess.Popen[bytes], url: str, script: Path, tag: str) -> Window:
    before, started = cpu_s(proc.pid), time.perf_counter()
    out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "30s",
                          "--latency", "-s", str(script), url + NOOP.route, "--", tag],
                         capture_output=True, text=True, check=True).stdout
    w = Window.parse(out)
    w.server_cores = (cpu_s(proc.pid) - before) / (time.perf_counter() - started)
    return w


def main(args: argparse.Namespace) -> None:
    ensure_wrk()
    import os
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    servers = {kind: start(kind) for kind in KINDS}
    results: dict[str, list[Window]] = {kind: [] for kind in KINDS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "noop.lua"
            script.write_text(lua_script(NOOP))
            for rnd in range(args.rounds):
                order = KINDS if rnd % 2 == 0 else KINDS[::-1]
                for kind in order:
                    w = window(args, *servers[kind], script, f"{kind[0]}{rnd}")
                    results[kind].append(w)
                    print(f"round {rnd + 1} {kind:9s} {w.per_s:9,.0f}/s  p99 {w.p99_ms:7.1f} ms  "
                          f"CPU {w.server_cores:.2f} cores" + (f"  ERRORS {w.problems}" if w.problems else ""),
                          flush=True)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"\n{args.rounds} rounds of {args.seconds} s, wrk -t1 -c{args.connections}; medians; ratios are "
          "medians of the per-round ratios against `app` (range):\n")
    print("| server | req/s | p99 | / app | CPU µs per request |")
    print("| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        ws = results[kind]
        ratios = [w.per_s / a.per_s for w, a in zip(ws, results["app"], strict=True)]
        cpu_us = statistics.median(w.server_cores / w.per_s * 1e6 for w in ws)
        print(f"| {kind} | {statistics.median(w.per_s for w in ws):,.0f} | "
              f"{statistics.median(w.p99_ms for w in ws):,.1f} ms | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | {cpu_us:.0f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=256)
    parsed = parser.parse_args()
    if parsed.serve:
        serve(parsed.serve, parsed.port)
    else:
        main(parsed)
