"""``dropgate persister`` exits non-zero when its loop ends by itself, and says why,
instead of lingering alive with nothing persisted (a supervisor then starts a fresh one)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from dropgate.cli import main
from dropgate.embedded import Endpoints
from dropgate.gcsettings import GC_THRESHOLD
from dropgate.persistence.persister import Persister
from tests.conftest import ADMIN_KEY


def _environment(monkeypatch: pytest.MonkeyPatch, servers: Endpoints, redis_url: str, isolated: str,
                 tmp_path: Path) -> None:
    for name, value in {"REDIS_URL": redis_url, "DATABASE_URL": servers.database_url,
                        "KEY_PREFIX": isolated, "DATABASE_SCHEMA": isolated, "PARTITIONS": "4",
                        "ADMIN_KEY": ADMIN_KEY, "DATA_DIR": str(tmp_path / "data"),
                        "PAYMENT_PROVIDER": "sandbox", "EVENT_LOOP": "asyncio"}.items():
        monkeypatch.setenv(f"DROPGATE_{name}", value)


def test_a_persister_whose_loop_dies_exits_1_and_logs_it(
        servers: Endpoints, redis_url: str, isolated: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def dies(self: Persister) -> None:
        raise RuntimeError("the loop died")

    monkeypatch.setattr(Persister, "run", dies)
    _environment(monkeypatch, servers, redis_url, isolated, tmp_path)
    assert main(["persister"]) == 1
    assert any("dropgate-persister stopped: RuntimeError('the loop died')" in r.getMessage()
               for r in caplog.records), caplog.text


def test_the_persister_process_sets_the_collector_as_the_server_does(
        servers: Endpoints, redis_url: str, isolated: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of events is thousands of objects: CPython's default threshold collected
    every few hundred (1.3-1.7 µs per event, ``benchmarks.persister --variants
    default_gc,after``), so the command freezes what it built and raises the thresholds."""
    seen: dict[str, object] = {}
    freezes: list[bool] = []
    # the freeze itself only recorded: this test process keeps what the servers of other
    # tests froze frozen (thawed, their leftovers would be collected, and reported, in a
    # later test's window)
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(True))

    async def looks(self: Persister) -> None:
        await asyncio.sleep(0.2)  # the command's start-up is over
        seen["threshold"], seen["freezes"] = gc.get_threshold(), len(freezes)
        raise RuntimeError("seen")

    monkeypatch.setattr(Persister, "run", looks)
    _environment(monkeypatch, servers, redis_url, isolated, tmp_path)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults (a server this session started may have set its own)
    try:
        assert main(["persister"]) == 1
    finally:  # this test process's thresholds as they were
        gc.set_threshold(*before)
    assert seen == {"threshold": GC_THRESHOLD, "freezes": 1}, seen
