"""Closing a runtime stops every background loop, also when one of them had died: the
dispatcher's exception once escaped the shutdown before the persister, the pool and the
Redis client were closed (the persister's was already caught)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from dropgate.persistence.persister import Persister
from dropgate.runtime import open_runtime
from dropgate.settings import Settings
from dropgate.webhooks.dispatcher import Dispatcher


async def test_a_dead_dispatcher_does_not_cut_the_shutdown_short(
        isolated: str, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def dies(self: Dispatcher) -> None:
        raise RuntimeError("the dispatcher died")

    monkeypatch.setattr(Dispatcher, "run", dies)
    closed: list[str] = []
    real_close = Persister.close

    async def close(self: Persister) -> None:
        closed.append(self.name)
        await real_close(self)

    monkeypatch.setattr(Persister, "close", close)
    caplog.set_level(logging.ERROR, logger="dropgate.runtime")
    async with open_runtime(make_settings(), run_persister=True, run_dispatcher=True) as runtime:
        assert runtime.dispatcher_task is not None and runtime.persister_task is not None
        await asyncio.sleep(0.1)  # the dispatcher has died by now
        assert runtime.dispatcher_task.done()
        persister_task = runtime.persister_task
    assert closed and persister_task.done()  # reached, and the loop ended
    assert any("dropgate-dispatcher stopped: RuntimeError('the dispatcher died')" in r.getMessage()
               for r in caplog.records), caplog.text
