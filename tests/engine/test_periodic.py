"""The sweepers' loop: a failed pass is logged and tried again; closing stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dropgate.engine.periodic import every


async def test_a_failed_pass_is_logged_and_the_loop_goes_on_until_closed(
        caplog: pytest.LogCaptureFixture) -> None:
    closed = asyncio.Event()
    calls: list[int] = []

    async def one_pass() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ConnectionError("redis away")
        if len(calls) == 3:
            closed.set()

    log = logging.getLogger("dropgate.tests.periodic")
    with caplog.at_level(logging.WARNING, logger=log.name):
        await asyncio.wait_for(every(0, closed, one_pass, log=log, what="test sweeper"), 30)
    assert calls == [0, 1, 2]
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("dropgate.tests.periodic", "test sweeper pass failed: ConnectionError('redis away')")]


async def test_closing_cuts_the_wait_between_passes_short() -> None:
    closed = asyncio.Event()
    passes: list[None] = []

    async def one_pass() -> None:
        passes.append(None)

    loop = asyncio.create_task(every(3600, closed, one_pass, log=logging.getLogger("t"), what="t"))
    while not passes:
        await asyncio.sleep(0)
    closed.set()
    await asyncio.wait_for(loop, 30)  # an hour's wait would never end in time
    assert len(passes) == 1
