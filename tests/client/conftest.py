"""A live ``dropgate serve`` process for the client and schema tests, and a faulty proxy.

The server runs as a real subprocess on a free loopback port, on the session's
real Redis and PostgreSQL with a private key prefix and schema, an admin key and
the persister on; it is shared by the tests of this folder, each of which makes
its own tenant. ``FaultyProxy`` sits in front of it to fail, delay or drop chosen
requests and records what reached it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from multidict import CIMultiDict
from redis.asyncio import Redis

from dropgate.client import AsyncDropgate
from dropgate.embedded import Endpoints
from dropgate.engine.keyspace import delete_prefix
from tests.support.processes import stop_processes

ADMIN_KEY = "live-admin-key-0123456789abcdef01234"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    admin_key: str
    prefix: str
    process: subprocess.Popen[bytes]


async def _create_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()


async def _cleanup(endpoints: Endpoints, prefix: str) -> None:
    redis = Redis.from_url(endpoints.redis_url)
    try:
        await delete_prefix(redis, prefix)
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        await conn.execute(f'DROP SCHEMA "{prefix}" CASCADE')
    finally:
        await conn.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"dropgate serve exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"dropgate serve did not become ready: {log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def live(servers: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``dropgate serve`` as a subprocess on real Redis + PostgreSQL (private prefix and schema)."""
    prefix = "live" + uuid.uuid4().hex[:10]
    asyncio.run(_create_schema(servers.database_url, prefix))
    port = free_port()
    folder = tmp_path_factory.mktemp("live")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env.update({
        "DROPGATE_REDIS_URL": servers.redis_url, "DROPGATE_DATABASE_URL": servers.database_url,
        "DROPGATE_KEY_PREFIX": prefix, "DROPGATE_DATABASE_SCHEMA": prefix,
        "DROPGATE_ADMIN_KEY": ADMIN_KEY, "DROPGATE_HOST": "127.0.0.1", "DROPGATE_PORT": str(port),
        "DROPGATE_PARTITIONS": "4", "DROPGATE_DATA_DIR": str(folder / "data"),
        "DROPGATE_LOG_LEVEL": "WARNING", "DROPGATE_PERSISTER_BLOCK_MS": "50",
        "DROPGATE_REDIS_MAX_CONNECTIONS": "32", "DROPGATE_DATABASE_POOL_SIZE": "4",
        "DROPGATE_PAYMENT_PROVIDER": "sandbox",
    })
    log = folder / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "dropgate", "serve"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield LiveServer(url=url, admin_key=ADMIN_KEY, prefix=prefix, process=process)
    finally:
        stop_processes([process], timeout_s=20)
        asyncio.run(_cleanup(servers, prefix))
    text = log.read_text()
    assert "Traceback" not in text, text[-5000:]


@dataclass
class TenantAccess:
    tenant_id: str
    service_key: str
    key_id: str


async def new_tenant(live: LiveServer, **fields: Any) -> TenantAccess:
    tenant_id = "t" + uuid.uuid4().hex[:12]
    async with AsyncDropgate(live.url, live.admin_key) as admin:
        await admin.tenants.create(tenant_id, **fields)
        key = await admin.keys.create("service", tenant_id=tenant_id, name="svc")
    return TenantAccess(tenant_id=tenant_id, service_key=key.key, key_id=key.key_id)


@pytest.fixture
async def tenant(live: LiveServer) -> TenantAccess:
    """A fresh tenant on the live server, with a service key."""
    return await new_tenant(live)


@pytest.fixture
async def admin(live: LiveServer) -> AsyncIterator[AsyncDropgate]:
    async with AsyncDropgate(live.url, live.admin_key, retries=0) as client:
        yield client


@pytest.fixture
async def dg(live: LiveServer, tenant: TenantAccess) -> AsyncIterator[AsyncDropgate]:
    """An async client with the fresh tenant's service key (no retries: errors surface at once)."""
    async with AsyncDropgate(live.url, tenant.service_key, retries=0) as client:
        yield client


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class Canned:
    """An answer the proxy gives itself instead of forwarding."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, code: str, *, details: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> Canned:
        body = json.dumps({"error": f"canned {code}", "code": code, "details": details or {}})
        return cls(status, body.encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class FaultyProxy:
    """Forwards to the live server, except for the faults it is told to inject.

    The first ``len(canned)`` requests get those answers from the proxy itself and
    are never forwarded; ``delay_first`` requests are held ``delay_s`` before being
    forwarded; ``drop_after_forward_first`` requests are forwarded, then their
    connection is cut before the answer. ``seen`` records every request that
    reached the proxy, ``forwarded`` those the server received.
    """

    upstream: str
    canned: list[Canned] = field(default_factory=list)
    delay_first: int = 0
    delay_s: float = 0.0
    drop_after_forward_first: int = 0
    seen: list[Seen] = field(default_factory=list)
    forwarded: list[Seen] = field(default_factory=list)
    url: str = ""
    _session: aiohttp.ClientSession | None = None

    def fail_first(self, n: int, status: int = 503, code: str = "UNAVAILABLE", **kw: Any) -> None:
        self.canned = [Canned.error(status, code, **kw) for _ in range(n)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path_qs, CIMultiDict(request.headers), body)
        self.seen.append(seen)
        n = len(self.seen)
        if n <= len(self.canned):
            answer = self.canned[n - 1]
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        if n <= self.delay_first:
            await asyncio.sleep(self.delay_s)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         data=body, headers=headers) as upstream:
            payload = await upstream.read()
            self.forwarded.append(seen)
            if n <= self.drop_after_forward_first:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped on purpose")
            out = {k: v for k, v in upstream.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding",
                                        "connection", "date", "server")}
            return web.Response(status=upstream.status, body=payload, headers=out)


@pytest.fixture
async def proxy(live: LiveServer) -> AsyncIterator[FaultyProxy]:
    faulty = FaultyProxy(upstream=live.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", faulty.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    faulty.url = f"http://127.0.0.1:{port}"
    faulty._session = aiohttp.ClientSession()
    try:
        yield faulty
    finally:
        await faulty._session.close()
        await runner.cleanup()
