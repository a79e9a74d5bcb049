"""The start-up check of ``dropgate/cli/stores.py``: bounded exponential backoff, one log
line per failed attempt, and the reasons it gives."""

from __future__ import annotations

import itertools
import logging
import socket
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from dropgate.cli.stores import StoreUnavailable, reason, redact, wait_for, wait_for_stores
from dropgate.embedded import Endpoints


async def test_waits_until_the_store_answers(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    async def check(url: str, timeout_s: float) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionRefusedError(111, "refused")

    with caplog.at_level(logging.INFO, logger="dropgate.startup"):
        await wait_for("Redis", "redis://h/0", "DROPGATE_REDIS_URL", check, deadline=time.monotonic() + 5)
    assert len(calls) == 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert 0.08 < gaps[0] < 0.5 and gaps[1] > gaps[0] * 1.5  # the pause doubles
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == ("Redis at redis://h/0 (DROPGATE_REDIS_URL): connection refused "
                           "(attempt 1; retrying in 0.1s)")
    assert messages[1].endswith("(attempt 2; retrying in 0.2s)")
    assert messages[2].startswith("Redis at redis://h/0 answered (attempt 3")


async def test_gives_up_at_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    async def check(url: str, timeout_s: float) -> None:
        raise ConnectionRefusedError(111, "refused")

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failed, caplog.at_level(logging.INFO, logger="dropgate.startup"):
        await wait_for("PostgreSQL", "postgresql://u:pw@h/db", "DROPGATE_DATABASE_URL", check,
                       deadline=started + 0.5)
    assert 0.45 < time.monotonic() - started < 1.5
    assert str(failed.value) == "PostgreSQL at postgresql://u:***@h/db (DROPGATE_DATABASE_URL): connection refused"
    assert len(caplog.records) >= 3 and caplog.records[-1].getMessage().endswith("giving up)")
    assert all("pw" not in r.getMessage() for r in caplog.records)


async def test_no_wait_means_one_attempt_and_no_log(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    async def check(url: str, timeout_s: float) -> None:
        calls.append(timeout_s)
        raise TimeoutError

    with pytest.raises(StoreUnavailable, match="no answer within 5s"), caplog.at_level(logging.DEBUG):
        await wait_for("Redis", "redis://h/0", "DROPGATE_REDIS_URL", check, deadline=time.monotonic())
    # one attempt, with one attempt's whole time (not the 0.5 s floor of a wait's end)
    assert calls == [5.0] and not [r for r in caplog.records if r.name == "dropgate.startup"]


async def test_real_stores_answer(servers: Endpoints) -> None:
    await wait_for_stores(servers.redis_url, servers.database_url, wait_s=0)
    await wait_for_stores(None, None, wait_s=0)  # embedded: nothing to check here


def test_reasons() -> None:
    wrapped = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connect call failed")
    wrapped.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    assert reason(wrapped, 2) == "connection refused"
    assert reason(socket.gaierror(-2, "Name or service not known"), 2) == "unknown host (Name or service not known)"
    assert reason(TimeoutError(), 2.5) == "no answer within 2.5s"
    assert reason(ValueError('database "x" does not exist\nDETAIL: ...'), 2) == 'database "x" does not exist'
    assert redact("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("postgresql://user:pw@h/db") == "postgresql://user:***@h/db"
    assert redact("unix:///tmp/r.sock") == "unix:///tmp/r.sock"
