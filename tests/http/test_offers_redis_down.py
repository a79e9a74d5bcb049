"""Redis unavailable: purchases answer 503 UNAVAILABLE fast, never hang, never sell, and
the service recovers by itself. Runs its own redis-server (never the shared one)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from dropgate.embedded import redis_server_binary
from dropgate.http.app import create_app
from dropgate.http.appkeys import RUNTIME
from dropgate.runtime import open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.apiserver import ApiServer
from tests.support.offers import create_offer, inventory, purchase


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.kill()


@pytest.fixture
async def down_api(make_settings: Callable[..., Settings], isolated: str,
                   own_redis: OwnRedis) -> AsyncIterator[Api]:
    settings = make_settings(redis_url=own_redis.url, redis_timeout_s=0.5)
    async with open_runtime(settings, run_persister=False) as rt:
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            yield api
        finally:
            await client.close()


async def _timed_purchase(api: Api, user: str) -> tuple[float, int, dict[str, object]]:
    started = time.monotonic()
    status, body = await asyncio.wait_for(purchase(api, "o1", user, 1), timeout=10)
    return time.monotonic() - started, status, body


async def test_redis_down_fails_fast(down_api: Api, own_redis: OwnRedis) -> None:
    api = down_api
    await create_offer(api, "o1", 10)
    assert (await purchase(api, "o1", "u0", 1))[0] == 201

    # killed: connections refused
    own_redis.kill()
    results = await asyncio.gather(*(_timed_purchase(api, f"u{i}") for i in range(20)))
    for elapsed, status, body in results:
        assert (status, body["code"]) == (503, "UNAVAILABLE")
        assert elapsed < 2.0
    status, ready = await api.call("GET", "/readyz", headers={})
    assert status == 503 and ready["redis"] is False
    assert (await api.call("GET", "/healthz", headers={}))[0] == 200

    # back: the service recovers by itself (same data, scripts reloaded on NOSCRIPT)
    own_redis.start()
    status, ready = await api.call("GET", "/readyz", headers={})
    assert ready["redis"] is True and ready["unpersisted_partitions"], ready  # nobody persists here
    await api.client.server.app[RUNTIME].new_persister().drain()
    assert (await api.call("GET", "/readyz", headers={}))[0] == 200
    assert (await purchase(api, "o1", "u1", 1))[0] == 201
    assert await inventory(api, "o1") == {"total": 10, "available": 8, "reserved": 2, "sold": 0}


async def test_hung_redis_times_out_instead_of_hanging(down_api: Api, own_redis: OwnRedis) -> None:
    api = down_api
    await create_offer(api, "o1", 10)
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
    try:
        elapsed, status, body = await _timed_purchase(api, "u1")
        assert (status, body["code"]) == (503, "UNAVAILABLE")
        assert elapsed < 2.0  # redis_timeout_s = 0.5
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    assert (await purchase(api, "o1", "u2", 1))[0] == 201
    inv = await inventory(api, "o1")
    assert inv["sold"] == 0 and inv["reserved"] + inv["available"] == 10
