"""Workers live and die with their server (issue 21, item 3): kill -9 of the first
process of ``serve --workers 2`` leaves no orphan serving, and a restart serves only
the new generation; ``/readyz`` is not ready while no persister consumes the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgspec
import pytest

from dropgate.engine.keys import partition_of
from dropgate.http.app import serving
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.hostile import Serve, kill9_first_process, listeners

_NEW_ADMIN_KEY = "rotated-admin-key-0123456789abcdef0123"


@pytest.mark.slow
async def test_kill_9_of_the_first_process_stops_its_workers(
        runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    old = Serve(settings, tmp_path / "old.log", workers=2)
    new: Serve | None = None
    try:
        old.wait_serving()
        worker, = listeners(old.port) - {old.proc.pid}
        await kill9_first_process(old.proc, old.port)  # the port closes within 5 s, no orphan
        # the next generation, with a rotated admin key, on the same port
        new = Serve(msgspec.structs.replace(settings, admin_key=_NEW_ADMIN_KEY), tmp_path / "new.log",
                    workers=2, port=old.port)
        new.wait_serving()
        assert old.proc.pid not in listeners(new.port) and worker not in listeners(new.port)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=40)) as http:
            async def status(key: str) -> int:
                async with http.get(new.url + "/v1/tenants/acme",
                                    headers={"Authorization": f"Bearer {key}"}) as r:
                    return r.status
            rotated_out = await asyncio.gather(*(status(str(settings.admin_key)) for _ in range(80)))
            current = await asyncio.gather(*(status(_NEW_ADMIN_KEY) for _ in range(20)))
        assert set(rotated_out) == {401}, rotated_out
        assert set(current) == {404}, current  # accepted; the tenant does not exist
    finally:
        old.stop()
        if new is not None:
            new.stop()


async def test_readyz_is_not_ready_while_no_persister_holds_a_partition(
        runtime: Runtime, persister: Persister) -> None:
    # one event in the log, nobody persisting it
    await runtime.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
    async with serving(runtime, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/readyz") as r:
            body = await r.json()
            assert r.status == 503, body
            (partition,) = body["unpersisted_partitions"]
            assert partition == partition_of("acme", runtime.keys.partitions)
        await persister.drain()
        async with http.get(url + "/readyz") as r:
            body = await r.json()
            assert (r.status, body["unpersisted_partitions"]) == (200, []), body
