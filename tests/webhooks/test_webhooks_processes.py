"""``dropgate dispatcher`` as a process: kill -9 mid-stream, start another, nothing is
lost and only what was in flight is sent twice (with the same event id)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.processes import stop_processes
from tests.support.webhooks import Receiver, receiver, register, until, webhook_settings

__all__ = ["receiver"]
_BATCH = 20


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, dispatcher_batch_size=_BATCH, dispatcher_lease_ms=1000)


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    for field, value in {
        "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
        "KEY_PREFIX": settings.key_prefix, "DATABASE_SCHEMA": settings.database_schema,
        "PARTITIONS": settings.partitions, "DATA_DIR": settings.data_dir, "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_BASE_S": "0.05", "WEBHOOK_RETRY_MAX_S": "0.2",
        "DISPATCHER_BLOCK_MS": "20", "DISPATCHER_LEASE_MS": "1000", "DISPATCHER_BATCH_SIZE": str(_BATCH),
    }.items():
        if value is not None:
            env[f"DROPGATE_{field}"] = str(value)
    return env


def _start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "dropgate", "dispatcher"], env=_env(settings),
                                stdout=out, stderr=subprocess.STDOUT)


async def test_kill_9_mid_stream_loses_nothing(api: Api, runtime: Runtime, settings: Settings,
                                               receiver: Receiver, tmp_path: Path) -> None:
    await register(api, receiver, ["invite.redeemed"])
    receiver.delay_s = 0.01
    users = [f"u{i}" for i in range(200)]
    for code in ("A", "B", "C", "D"):
        status, body = await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 1000})
        assert status == 201, body
    log = tmp_path / "dispatcher.log"
    first = _start(settings, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        async def redeem(i: int, user: str) -> None:
            status, body = await api.call("POST", f"/v1/invites/{'ABCD'[i % 4]}/redeem", json={"user_id": user})
            assert status == 200, body
        await asyncio.gather(*(redeem(i, u) for i, u in enumerate(users)))
        await until(lambda: len(receiver.accepted) >= 40, what="the first process delivering",
                    timeout_s=120)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        got_before = len({e["data"]["user_id"] for e in receiver.accepted})
        assert got_before < len(users), "killed too late to test anything"
        second = _start(settings, log)
        await until(lambda: {e["data"]["user_id"] for e in receiver.accepted} >= set(users),
                    what="every redemption delivered", timeout_s=120)
    finally:
        stop_processes([first, second], timeout_s=30)
    assert receiver.rejected == 0
    counts = Counter(e["id"] for e in receiver.accepted)
    assert len(counts) == len(users)
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= 2 * _BATCH, (duplicates, log.read_text()[-2000:])
    rows = await runtime.pool.fetch(
        "SELECT event_id, count(*) AS n, min(status) AS s FROM dg_webhook_deliveries GROUP BY event_id")
    assert len(rows) == len(users) and {(r["n"], r["s"]) for r in rows} == {(1, "succeeded")}
    for code in "ABCD":  # per entity, in log order
        uses = [e["data"]["used_count"] for e in receiver.accepted if e["data"]["code"] == code]
        first_seen = list(dict.fromkeys(uses))
        assert first_seen == sorted(first_seen), code


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dropgate", "webhooks", *args], env=_env(settings),
                          capture_output=True, text=True, timeout=120)


async def test_webhooks_command_lists_and_replays(api: Api, runtime: Runtime, settings: Settings,
                                                  receiver: Receiver) -> None:
    endpoint = await register(api, receiver, ["invite.redeemed"])
    ep = str(endpoint["endpoint_id"])
    await api.call("POST", "/v1/invites", json={"code": "Q", "max_uses": 5})
    await api.call("POST", "/v1/invites/Q/redeem", json={"user_id": "u1"})
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.drain()
        assert len(receiver.accepted) == 1
        # mark it failed and the endpoint disabled, as three days of failures would
        await runtime.pool.execute("UPDATE dg_webhook_deliveries SET status = 'failed'")
        await runtime.pool.execute("UPDATE dg_webhook_endpoints SET disabled_at = now()")
        listed = await asyncio.to_thread(_cli, settings, "list", "--tenant", "acme")
        assert listed.returncode == 0 and ep in listed.stdout and "disabled" in listed.stdout, listed
        log = await asyncio.to_thread(_cli, settings, "deliveries", ep, "--status", "failed")
        assert log.returncode == 0 and "invite.redeemed" in log.stdout, log
        delivery_id = log.stdout.split()[0]
        bad = await asyncio.to_thread(_cli, settings, "replay")
        assert bad.returncode == 2 and "DELIVERY_ID" in bad.stderr
        done = await asyncio.to_thread(_cli, settings, "replay", delivery_id, "--enable")
        assert done.returncode == 0 and "1 deliveries queued again" in done.stdout, done
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    assert len(receiver.accepted) == 2 and receiver.accepted[0]["id"] == receiver.accepted[1]["id"]
    status, listed_api = await api.call("GET", "/v1/webhook-endpoints")
    assert status == 200 and listed_api["data"][0]["status"] == "enabled"
