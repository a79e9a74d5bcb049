"""A persister on a PostgreSQL without autovacuum says so, in one line naming the setting (#19).

Without autovacuum no table is analyzed, and PostgreSQL plans the persister's lookups on
size guesses and keeps those plans: the purchase history's key check, planned so, stalled
the persister behind an offers crowd (migration 0017). The suite runs on the machine's
PostgreSQL (autovacuum off here) and on the embedded one (on), so each run sees one side:
the line appears exactly when the server says ``autovacuum`` is off.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from dropgate.persistence.database import AUTOVACUUM_OFF, autovacuum_off
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime


async def test_the_warning_follows_the_servers_setting(runtime: Runtime, persister: Persister,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    off = await runtime.pool.fetchval("SHOW autovacuum") == "off"
    assert await autovacuum_off(runtime.pool) is off
    caplog.set_level(logging.WARNING, logger="dropgate.persistence.persister")
    task = asyncio.create_task(persister.run())
    try:
        for _ in range(100):  # the check runs first, before the first lease is taken
            if persister.partitions or AUTOVACUUM_OFF in caplog.text:
                break
            await asyncio.sleep(0.05)
    finally:
        await persister.close()
        await asyncio.wait_for(task, 10)
    warnings = [r.getMessage() for r in caplog.records if AUTOVACUUM_OFF in r.getMessage()]
    assert len(warnings) == (1 if off else 0), warnings
    if off:
        assert "autovacuum = on" in warnings[0] and persister.name in warnings[0]
