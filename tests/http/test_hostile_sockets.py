"""Slow and idle sockets against ``dropgate serve`` under a 1,024 open-file limit (the
default soft limit of a systemd service): the server keeps answering, and every slow
socket is closed within its timeout (issue 21, item 1). Short timeouts via settings."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from dropgate.http.app import serving
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.hostile import Crowd, Serve, probe

HEADER_TIMEOUT_S = 1.0
BODY_GRACE_S = 1.0
IDLE_TIMEOUT_S = 1.5
SHORT = {"DROPGATE_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
         "DROPGATE_HTTP_BODY_GRACE_S": str(BODY_GRACE_S),
         "DROPGATE_HTTP_BODY_MIN_RATE": "1024",
         "DROPGATE_HTTP_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S)}


def _open_files_limit(pid: int) -> list[str] | None:
    """Soft and hard open-file limits of ``pid`` (Linux /proc), None elsewhere."""
    limits = Path(f"/proc/{pid}/limits")
    if not limits.exists():
        return None
    line = next(x for x in limits.read_text().splitlines() if x.startswith("Max open files"))
    return line.split()[3:5]


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
        limits = _open_files_limit(serve.proc.pid)
        assert limits in (None, ["1024", "1024"]), limits  # Linux: the server runs under it
        crowd = Crowd(serve.port, ADMIN_KEY)
        # 1,500 sockets at once, more than the server's file limit: idle, dripping
        # headers, dripping a declared 1 MB body (one byte every 0.5 s)
        slow = crowd.open(500, drip_s=0.5)  # light on this process: the probes share its loop
        await asyncio.sleep(0.5)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        took: list[float] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as probes:
            for _ in range(15):  # while the slow sockets are open or being shed
                took.append(await probe(probes, serve.url + "/healthz", {}))
                took.append(await probe(probes, serve.url + "/v1/tenants/nobody", admin))
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


async def test_over_the_cap_the_oldest_idle_connection_is_shed_first(
        make_settings: Callable[..., Settings], isolated: str) -> None:
    settings = make_settings(http_max_connections=16)
    async with open_runtime(settings, run_persister=False) as rt, \
            serving(rt, "127.0.0.1", 0) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = []
        for _ in range(16):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.02)  # an order of age the server sees
        async with aiohttp.ClientSession() as http:  # one more connection: over the cap
            async with http.get(url + "/healthz") as r:
                assert r.status == 200
        oldest_reader, _ = idle[0]
        assert await asyncio.wait_for(oldest_reader.read(), 5) == b""  # closed by the server
        youngest_reader, _ = idle[-1]
        with pytest.raises(TimeoutError):  # still open
            await asyncio.wait_for(youngest_reader.read(), 0.3)
        for _, writer in idle:
            writer.close()
