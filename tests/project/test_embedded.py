"""Embedded servers: a failed start leaves nothing running behind it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dropgate.embedded import EmbeddedPostgres, EmbeddedStack


def test_a_failed_start_stops_what_it_started(embedded_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: EmbeddedPostgres) -> str:
        raise RuntimeError("postgres failed to start")

    monkeypatch.setattr(EmbeddedPostgres, "start", broken)
    stack = EmbeddedStack(embedded_dir)
    with pytest.raises(RuntimeError, match="postgres failed"):
        stack.endpoints(None, None)
    pidfile = embedded_dir / "redis" / "redis.pid"
    deadline = time.monotonic() + 10
    while pidfile.exists():  # redis-server removes its pid file as it exits
        assert time.monotonic() < deadline, "the embedded Redis was left running"
        time.sleep(0.05)
    assert not (embedded_dir / "redis" / "redis.sock").exists()
    assert stack.redis is None and os.listdir(embedded_dir / "redis")
