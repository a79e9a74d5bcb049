"""``dropgate persister`` exits non-zero when its loop ends by itself, and says why,
instead of lingering alive with nothing persisted (a supervisor then starts a fresh one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropgate.cli import main
from dropgate.embedded import Endpoints
from dropgate.persistence.persister import Persister
from tests.conftest import ADMIN_KEY


def test_a_persister_whose_loop_dies_exits_1_and_logs_it(
        servers: Endpoints, redis_url: str, isolated: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def dies(self: Persister) -> None:
        raise RuntimeError("the loop died")

    monkeypatch.setattr(Persister, "run", dies)
    for name, value in {"REDIS_URL": redis_url, "DATABASE_URL": servers.database_url,
                        "KEY_PREFIX": isolated, "DATABASE_SCHEMA": isolated, "PARTITIONS": "4",
                        "ADMIN_KEY": ADMIN_KEY, "DATA_DIR": str(tmp_path / "data"),
                        "PAYMENT_PROVIDER": "sandbox", "EVENT_LOOP": "asyncio"}.items():
        monkeypatch.setenv(f"DROPGATE_{name}", value)
    assert main(["persister"]) == 1
    assert any("dropgate-persister stopped: RuntimeError('the loop died')" in r.getMessage()
               for r in caplog.records), caplog.text
