"""Slow and idle sockets against ``dropgate serve`` under a 1,024 open-file limit (the
default soft limit of a systemd service): the server keeps answering, and every slow
socket is closed within its timeout (issue 21, item 1). Short timeouts via settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from dropgate.http.app import serving
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.hostile import SHORT_ENV, Serve, slow_socket_wave


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
    serve = Serve(settings, tmp_path / "serve.log", workers=workers, nofile=1024, env=SHORT_ENV)
    try:
        serve.wait_serving()
        limits = _open_files_limit(serve.proc.pid)
        assert limits in (None, ["1024", "1024"]), limits  # Linux: the server runs under it
        # 1,500 sockets, more than the server's file limit: idle, dripping headers,
        # dripping a declared 1 MB body (one byte every 0.5 s); probes must answer within
        # 1 s throughout, and every slow socket must be closed within its timeout
        await slow_socket_wave(serve.port, ADMIN_KEY, per_kind=500, drip_s=0.5)
        assert serve.proc.poll() is None
    finally:
        serve.stop()


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
