"""Two real ``dropgate serve`` processes sharing Redis: each has its own tenant actor, and
the scripts' fence still orders every payment against the suspension."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.actors_flood import check_log_and_balances, flood_with_suspension
from tests.support.processes import stop_processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    for field, value in {
        "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
        "KEY_PREFIX": settings.key_prefix, "DATABASE_SCHEMA": settings.database_schema,
        "PARTITIONS": settings.partitions, "ADMIN_KEY": settings.admin_key,
        "DATA_DIR": settings.data_dir, "LOG_LEVEL": "WARNING",
        "PAYMENT_PROVIDER": settings.payment_provider,
    }.items():
        if value is not None:
            env[f"DROPGATE_{field}"] = str(value)
    return env


async def _wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes],
                      log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"dropgate serve exited; its output is in {log}")
        try:
            async with session.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "dropgate serve did not start"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_two_processes_payment_flood_with_a_suspension(
    runtime: Runtime, persister: Persister, settings: Settings, tmp_path: Path
) -> None:
    # the runtime fixture has migrated the schema; the servers share its prefix and schema
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"serve-{port}.log" for port in ports]
    procs = []
    for port, log in zip(ports, logs, strict=True):
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dropgate", "serve", "--port", str(port), "--no-persister"],
                env=_env(settings), stdout=out, stderr=subprocess.STDOUT))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as crowd, \
                aiohttp.ClientSession() as operator:
            for url, proc, log in zip(urls, procs, logs, strict=True):
                await _wait_ready(operator, url, proc, log)
            async with operator.post(urls[0] + "/v1/tenants", headers=admin,
                                     json={"tenant_id": "acme", "name": "Acme"}) as r:
                assert r.status == 201, await r.text()
            async with operator.post(urls[1] + "/v1/keys", headers=admin,
                                     json={"role": "service", "tenant_id": "acme", "name": "svc"}) as r:
                assert r.status == 201, await r.text()
                service = {"Authorization": f"Bearer {(await r.json())['key']}"}

            async def send(method: str, path: str, body: Any, is_admin: bool, i: int) -> tuple[int, Any]:
                session, headers = (operator, admin) if is_admin else (crowd, service)
                async with session.request(method, urls[i % 2] + path, json=body,
                                           headers=headers) as response:
                    return response.status, await response.json()

            succeeded = await flood_with_suspension(send, "acme")
        payments = await check_log_and_balances(runtime, persister, "acme", succeeded)
        # both processes' actors committed payments, each under its own lease epoch
        assert len({p.epoch for p in payments}) == 2
    finally:
        stop_processes(procs, timeout_s=30)
    assert all(proc.returncode == 0 for proc in procs)
