"""Several ``dropgate dispatcher`` processes share the partitions evenly, as persisters
do (``PartitionLeases``), and when one is killed -9 the others take its partitions
within the lease: every event is still delivered, duplicates only what was in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from dropgate.ids import text
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.processes import stop_processes
from tests.support.webhooks import Receiver, receiver, register, until, webhook_settings
from tests.webhooks.test_webhooks_processes import _BATCH, _start

__all__ = ["receiver"]
LEASE_MS = 1000  # what tests.webhooks.test_webhooks_processes._env gives the processes


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, partitions=6, dispatcher_batch_size=_BATCH,
                            dispatcher_lease_ms=LEASE_MS)  # 3 dispatchers: 2 partitions each


async def _per_process(runtime: Runtime, procs: list[subprocess.Popen[bytes]]) -> list[int]:
    held = [await runtime.redis.get(runtime.keys.dispatcher_lease(p))
            for p in range(runtime.keys.partitions)]
    names = [None if raw is None else text(raw) for raw in held]
    return [sum(1 for n in names if n is not None and f"-{proc.pid}-" in n) for proc in procs]


@pytest.mark.slow
async def test_three_dispatchers_share_and_take_over_a_killed_one(
        api: Api, runtime: Runtime, settings: Settings, receiver: Receiver, tmp_path: Path) -> None:
    await register(api, receiver, ["invite.redeemed"])
    receiver.delay_s = 0.01
    codes = [f"C{i}" for i in range(12)]  # spread over the 6 partitions
    for code in codes:
        status, body = await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 1000})
        assert status == 201, body
    log = tmp_path / "dispatchers.log"
    procs = [_start(settings, log) for _ in range(3)]
    try:
        async def spread() -> bool:
            return await _per_process(runtime, procs) == [2, 2, 2]
        deadline = time.monotonic() + 60
        while not await spread():
            assert time.monotonic() < deadline, ("not spread evenly", await _per_process(runtime, procs))
            await asyncio.sleep(0.1)

        users = [f"u{i}" for i in range(300)]

        async def redeem(i: int, user: str) -> None:
            status, body = await api.call("POST", f"/v1/invites/{codes[i % len(codes)]}/redeem",
                                          json={"user_id": user})
            assert status == 200, body
        await asyncio.gather(*(redeem(i, u) for i, u in enumerate(users)))
        await until(lambda: len(receiver.accepted) >= 30, what="the dispatchers delivering",
                    timeout_s=120)
        victim = procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        killed_at = time.monotonic()
        got_before = len({e["data"]["user_id"] for e in receiver.accepted})
        assert got_before < len(users), "killed too late to test anything"

        async def taken_over() -> bool:
            per = await _per_process(runtime, procs)
            return per[0] == 0 and per[1] == per[2] == 3
        while not await taken_over():
            assert time.monotonic() - killed_at < 60, ("not taken over", await _per_process(runtime, procs))
            await asyncio.sleep(0.1)
        # within the lease (it lapses) plus a renewal period or two, on a noisy machine
        assert time.monotonic() - killed_at < LEASE_MS / 1000 * 10
        await until(lambda: {e["data"]["user_id"] for e in receiver.accepted} >= set(users),
                    what="every redemption delivered", timeout_s=120)
    finally:
        stop_processes(procs, timeout_s=30)
    assert receiver.rejected == 0
    counts = Counter(e["id"] for e in receiver.accepted)
    assert len(counts) == len(users)  # nothing lost
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= 2 * 2 * _BATCH, (duplicates, log.read_text()[-2000:])  # only in flight
    rows = await runtime.pool.fetch(
        "SELECT event_id, count(*) AS n, min(status) AS s FROM dg_webhook_deliveries GROUP BY event_id")
    assert len(rows) == len(users) and {(r["n"], r["s"]) for r in rows} == {(1, "succeeded")}
