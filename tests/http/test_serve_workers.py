"""``dropgate serve --workers N``: several real API processes on one port, one crowd."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.engine.test_actors_processes import _env, _free_port

_ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _listeners(port: int) -> set[int]:
    """The pids with a listening TCP socket on ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


def _start(settings: Settings, port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dropgate", "serve", "--port", str(port), "--no-persister",
             "--workers", str(workers)], env=_env(settings), stdout=out, stderr=subprocess.STDOUT)


def _wait_serving(proc: subprocess.Popen[bytes], log: Path) -> str:
    """Until the first process says it serves: it says so once every worker serves."""
    deadline = time.monotonic() + 120
    while "dropgate: serving on" not in (text := log.read_text()):
        assert proc.poll() is None, f"dropgate serve exited:\n{text}"
        assert time.monotonic() < deadline, f"dropgate serve did not start:\n{text}"
        time.sleep(0.1)
    return text


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_workers_share_one_port_and_sell_exactly_the_inventory(
    runtime: Runtime, persister: Persister, settings: Settings, tmp_path: Path
) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(settings, port, log, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        assert "2 workers" in _wait_serving(proc, log)
        listeners = _listeners(port)
        assert len(listeners) == 2 and proc.pid in listeners, listeners
        (worker,) = listeners - {proc.pid}
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/tenants", headers=_ADMIN,
                                 json={"tenant_id": "acme", "name": "Acme"}) as r:
                assert r.status == 201, await r.text()
            async with http.post(url + "/v1/keys", headers=_ADMIN,
                                 json={"role": "service", "tenant_id": "acme", "name": "svc"}) as r:
                service = {"Authorization": f"Bearer {(await r.json())['key']}"}
            async with http.post(url + "/v1/offers", headers=service,
                                 json={"offer_id": "hot", "event_id": "drop", "name": "Hot",
                                       "price": "25.00", "currency": "usd", "inventory_total": 100}) as r:
                assert r.status == 201, await r.text()
        # 300 buyers at once, each on its own connection, so the kernel spreads them over
        # both processes' sockets
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as crowd:
            async def buy(i: int) -> int:
                async with crowd.post(url + "/v1/offers/hot/purchase", headers=service,
                                      json={"user_id": f"u{i}", "quantity": 1}) as r:
                    return r.status
            statuses = await asyncio.gather(*(buy(i) for i in range(300)))
            assert statuses.count(201) == 100 and statuses.count(409) == 200
            # whichever process answers the scrape, it counts both processes' sales: exactly
            # the 100 units (how the kernel spread the crowd is not asserted: on a loaded
            # machine one process may take it all)
            for _ in range(10):
                async with crowd.get(url + "/metrics") as r:
                    found = re.search(r'dropgate_http_requests_total\{method="POST",'
                                      r'route="/v1/offers/\{offer_id\}/purchase",status="201"\} (\S+)',
                                      await r.text())
                    assert found is not None and float(found.group(1)) == 100
        state = await runtime.offers.read("acme", "hot")
        assert (state.reserved, state.sold, state.total) == (100, 0, 100)
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()
    assert not _alive(worker)


@pytest.mark.slow
async def test_a_worker_that_dies_stops_the_whole_server(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(settings, port, log, workers=2)
    try:
        _wait_serving(proc, log)
        (worker,) = _listeners(port) - {proc.pid}
        os.kill(worker, signal.SIGKILL)
        proc.wait(60)
    finally:
        _stop(proc)
    assert proc.returncode == 1
    assert "a worker exited (code -9): stopping the server" in log.read_text()
    assert not _listeners(port)


async def test_workers_below_one_is_a_clear_error(settings: Settings) -> None:
    result = subprocess.run([sys.executable, "-m", "dropgate", "serve", "--workers", "0"],
                            env=_env(settings), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "dropgate: DROPGATE_WORKERS (--workers) must be an integer of at least 1, got '0'\n"


def _counter(exposition: str, name: str, **labels: str) -> float | None:
    """The value of one sample of ``exposition`` (labels in any order), or None."""
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        sample, _, value = line.rpartition(" ")
        got = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


@pytest.mark.slow
async def test_metrics_add_up_over_workers_and_never_go_down(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    with log.open("wb") as out:  # with the persister, in the first process only
        proc = subprocess.Popen(
            [sys.executable, "-m", "dropgate", "serve", "--port", str(port), "--workers", "2"],
            env=_env(settings), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_serving(proc, log)
        pids = _listeners(port)
        assert len(pids) == 2
        sent = 0
        last: dict[str, float] = {}
        workers_seen: set[str] = set()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as http:
            for scrape in range(10):
                async def ping() -> int:
                    async with http.get(url + "/healthz") as r:
                        return r.status
                statuses = await asyncio.gather(*(ping() for _ in range(100)))
                assert statuses == [200] * 100
                sent += 100
                async with http.get(url + "/metrics") as r:
                    assert r.status == 200
                    body = await r.text()
                healthz = _counter(body, "dropgate_http_requests_total", route="/healthz", status="200")
                assert healthz == sent, (scrape, healthz, sent)
                scrapes = _counter(body, "dropgate_http_requests_total", route="/metrics", status="200")
                assert (scrapes or 0.0) == scrape, (scrape, scrapes)  # the earlier scrapes, both workers
                for name in ("dropgate_persister_applied_events_total", "dropgate_persister_batches_total",
                             "dropgate_persister_transient_errors_total"):
                    value = _counter(body, name)
                    assert value is not None, f"{name} missing from scrape {scrape}"
                    assert value >= last.get(name, 0.0), (name, value, last)
                    last[name] = value
                workers_seen |= set(re.findall(r'dropgate_actor_mailbox_depth\{[^}]*worker="(\d+)"', body))
        # the per-process gauges name their worker: both processes are there
        assert workers_seen == {str(pid) for pid in pids}, (workers_seen, pids)
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()
