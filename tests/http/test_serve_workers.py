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
from tests.engine.test_actors_processes import _env
from tests.support.hostile import Serve, alive, listeners
from tests.support.seed import seed_offer


@pytest.mark.slow
async def test_workers_share_one_port_and_sell_exactly_the_inventory(
    runtime: Runtime, persister: Persister, settings: Settings, tmp_path: Path
) -> None:
    serve = Serve(settings, tmp_path / "serve.log", workers=2)
    port, proc, url = serve.port, serve.proc, serve.url
    try:
        assert "2 workers" in serve.wait_serving()
        pids = listeners(port)
        assert len(pids) == 2 and proc.pid in pids, pids
        (worker,) = pids - {proc.pid}
        service = await seed_offer(url, inventory_total=100)
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
            # the coalescing queues too, over both processes (each copies its own counts into
            # the shared files at a scrape and every second): a hold per buyer, at least
            deadline = time.monotonic() + 10
            while True:
                async with crowd.get(url + "/metrics") as r:
                    body = await r.text()
                items = _counter(body, "dropgate_batched_items_total", queue="offer_purchases") or 0.0
                calls = _counter(body, "dropgate_batches_total", queue="offer_purchases") or 0.0
                if items >= 300 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert 300 <= items <= 600 and 1 <= calls < 300, (items, calls)
        state = await runtime.offers.read("acme", "hot")
        assert (state.reserved, state.sold, state.total) == (100, 0, 100)
    finally:
        serve.stop()
    assert proc.returncode == 0, serve.log.read_text()
    assert not alive(worker)


@pytest.mark.slow
async def test_a_worker_that_dies_stops_the_whole_server(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    serve = Serve(settings, tmp_path / "serve.log", workers=2)
    port, proc = serve.port, serve.proc
    try:
        serve.wait_serving()
        (worker,) = listeners(port) - {proc.pid}
        os.kill(worker, signal.SIGKILL)
        proc.wait(60)
    finally:
        serve.stop()
    assert proc.returncode == 1
    assert "a worker exited (code -9): stopping the server" in serve.log.read_text()
    assert not listeners(port)


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
    # with the persister, in the first process only
    serve = Serve(settings, tmp_path / "serve.log", workers=2, persister=True)
    port, proc, url = serve.port, serve.proc, serve.url
    try:
        serve.wait_serving()
        pids = listeners(port)
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
        serve.stop()
    assert proc.returncode == 0, serve.log.read_text()


def _boards_mapped(pid: int) -> set[str]:
    """The (device, inode) of the admission boards ``pid`` maps (Linux /proc)."""
    with open(f"/proc/{pid}/maps") as f:
        return {" ".join(cols[3:5]) for line in f if "dropgate-admission" in line
                for cols in [line.split()]}


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False])
async def test_workers_map_one_admission_board(
    runtime: Runtime, settings: Settings, tmp_path: Path, shared: bool
) -> None:
    """The processes of ``--workers 2`` map the same admission board (http/admission.py),
    and none with DROPGATE_TENANT_ADMISSION_SHARED=false."""
    serve = Serve(settings, tmp_path / "serve.log", workers=2,
                  env={"DROPGATE_TENANT_ADMISSION_SHARED": "true" if shared else "false"})
    try:
        serve.wait_serving()
        pids = listeners(serve.port)
        assert len(pids) == 2
        mapped = [_boards_mapped(pid) for pid in pids]
        if shared:
            assert len(mapped[0]) == 1 and mapped[0] == mapped[1], mapped
        else:
            assert mapped == [set(), set()]
    finally:
        serve.stop()
    assert serve.proc.returncode == 0, serve.log.read_text()
