"""Slow and idle sockets against ``dropgate serve`` under a 1,024 open-file limit (the
default soft limit of a systemd service): the server keeps answering, and every slow
socket is closed within its timeout (issue 21, item 1). Short timeouts via settings."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.hostile import Serve

HEADER_TIMEOUT_S = 1.0
BODY_GRACE_S = 1.0
IDLE_TIMEOUT_S = 1.5
SHORT = {"DROPGATE_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
         "DROPGATE_HTTP_BODY_GRACE_S": str(BODY_GRACE_S),
         "DROPGATE_HTTP_BODY_MIN_RATE": "1024",
         "DROPGATE_HTTP_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S)}


@dataclass
class Crowd:
    """Slow sockets of three kinds, dripping until the server closes them."""

    port: int
    closed_after: dict[str, list[float]] = field(default_factory=lambda: {"idle": [], "head": [], "body": []})
    refused: int = 0

    async def one(self, kind: str, drip_s: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.refused += 1
            return
        opened = time.monotonic()
        try:
            if kind == "head":
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            elif kind == "body":
                writer.write(b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                             b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
                             b"Content-Length: 1000000\r\n\r\n{")
            while True:
                if kind != "idle":
                    writer.write(b"X-Drip: 1\r\n" if kind == "head" else b" ")
                    await writer.drain()
                try:  # the server closing the socket: EOF (or a reset), or an answer
                    data = await asyncio.wait_for(reader.read(65536), drip_s)
                except TimeoutError:
                    continue
                if not data:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        self.closed_after[kind].append(time.monotonic() - opened)


async def _probe(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    started = time.monotonic()
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
        assert r.status in (200, 404), r.status
        await r.read()
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_slow_sockets_do_not_take_the_server_down(
        runtime: Runtime, settings: Settings, tmp_path: Path, workers: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft < want:  # this test process opens more sockets than the server may
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    serve = Serve(settings, tmp_path / "serve.log", workers=workers, nofile=1024, env=SHORT)
    try:
        serve.wait_serving()
        crowd = Crowd(serve.port)
        # 1,500 sockets at once, more than the server's file limit: idle, dripping
        # headers, dripping a declared 1 MB body (one byte every 0.3 s)
        slow = [asyncio.create_task(crowd.one(kind, 0.3))
                for kind in ("idle", "head", "body") for _ in range(500)]
        await asyncio.sleep(0.5)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        took: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as probes:
            for _ in range(15):  # while the slow sockets are open or being shed
                took.append(await _probe(probes, serve.url + "/healthz", {}))
                took.append(await _probe(probes, serve.url + "/v1/tenants/nobody", admin))
                await asyncio.sleep(0.1)
        assert max(took) < 1.0, sorted(took)[-5:]
        # every slow socket is closed by the server: shed over the cap at once, or past
        # its timeout (plus the watchdog's sweep and a noisy machine's margin)
        _done, pending = await asyncio.wait(slow, timeout=15)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} slow sockets still open after 15 s"
        limit = {"idle": IDLE_TIMEOUT_S, "head": HEADER_TIMEOUT_S, "body": BODY_GRACE_S}
        for kind, after in crowd.closed_after.items():
            assert after, kind
            assert max(after) < limit[kind] + 6.0, (kind, max(after))
        assert serve.proc.poll() is None
    finally:
        serve.stop()
    with contextlib.suppress(Exception):
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
