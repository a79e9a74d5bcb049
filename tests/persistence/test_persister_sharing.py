"""Several ``dropgate persister`` processes share the partitions, and survive a kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dropgate.ids import text
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.engine.test_actors_processes import _env
from tests.persistence.test_persister import _assert_pg_equals_redis, _load, _setup
from tests.support.processes import stop_processes

LEASE_MS = 1500


async def _holders(runtime: Runtime) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for p in range(runtime.keys.partitions):
        raw = await runtime.redis.get(runtime.keys.persister_lease(p))
        out[p] = None if raw is None else text(raw)
    return out


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(partitions=6)  # 3 persisters: 2 partitions each


def _start(settings: Settings, name: str, folder: Path) -> subprocess.Popen[bytes]:
    env = _env(settings)
    env.update(DROPGATE_PERSISTER_LEASE_MS=str(LEASE_MS), DROPGATE_PERSISTER_BLOCK_MS="50")
    log = (folder / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "dropgate", "persister"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.cluster
async def test_three_persisters_share_and_take_over_a_killed_one(
        runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    invites = await _setup(runtime)
    procs = [_start(settings, f"pz{i}", tmp_path) for i in range(3)]
    try:
        async def spread() -> bool:
            held = list((await _holders(runtime)).values())
            per = [sum(1 for h in held if h is not None and f"-{proc.pid}-" in h) for proc in procs]
            return per == [2, 2, 2]
        await _wait_for("the partitions did not spread over 3 persisters", spread, 60)

        load = asyncio.create_task(_load(invites, 0, 1500))
        await asyncio.sleep(0.3)
        victim = procs[0]
        os.kill(victim.pid, signal.SIGKILL)  # kill -9 mid-crowd
        victim.wait(10)
        killed_at = time.monotonic()
        await load

        async def taken_over() -> bool:
            held = list((await _holders(runtime)).values())
            per = [sum(1 for h in held if h is not None and f"-{proc.pid}-" in h) for proc in procs]
            return per[0] == 0 and per[1] + per[2] == 6 and abs(per[1] - per[2]) <= 1
        await _wait_for("the survivors did not take the dead persister's partitions",
                        taken_over, 30)
        # within the lease (lapse) plus a renewal period or two, on a noisy machine
        assert time.monotonic() - killed_at < LEASE_MS / 1000 * 6

        async def drained() -> bool:
            lengths = [await runtime.redis.xlen(runtime.keys.log(p))
                       for p in range(runtime.keys.partitions)]
            return sum(lengths) == 0
        await _wait_for("the survivors did not drain the logs", drained, 60)
        await _assert_pg_equals_redis(runtime)  # nothing lost, nothing applied twice
        assert await runtime.pool.fetchval("SELECT count(*) FROM invite_code_uses") == 1500
    finally:
        stop_processes(procs, timeout_s=15)
