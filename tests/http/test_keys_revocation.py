"""Revocation is immediate (#21): once ``DELETE /v1/keys/{id}`` has answered, no process
of ``serve --workers 2`` serves the key, however warm its cache; a revoked admin key
cannot mint, not even with mints racing its revocation (cascade takes those too)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.engine.test_actors_processes import _free_port
from tests.http.test_serve_workers import _ADMIN, _start, _stop, _wait_serving

_CONNECTIONS = 40


async def _post(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
    async with http.post(url, headers=headers, json=body) as r:
        return r.status, await r.json()


@pytest.mark.slow
async def test_revocation_is_immediate_on_every_worker(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(settings, port, log, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_serving(proc, log)
        connector = aiohttp.TCPConnector(limit=_CONNECTIONS)  # 40 kept-alive connections
        async with aiohttp.ClientSession() as admin, aiohttp.ClientSession(connector=connector) as crowd:
            status, _ = await _post(admin, url + "/v1/tenants", _ADMIN, {"tenant_id": "acme", "name": "Acme"})
            assert status == 201
            status, key = await _post(admin, url + "/v1/keys", _ADMIN,
                                      {"role": "service", "tenant_id": "acme", "name": "victim"})
            assert status == 201
            victim = {"Authorization": f"Bearer {key['key']}"}

            async def get() -> int:
                async with crowd.get(url + "/v1/tenant", headers=victim) as r:
                    await r.read()
                    return r.status

            # warm every connection (so both workers' caches) with the key
            warm = await asyncio.gather(*(get() for _ in range(_CONNECTIONS * 10)))
            assert warm.count(200) == len(warm)
            revoked_at: list[float] = []
            after: list[int] = []
            stop = asyncio.Event()

            async def hammer() -> None:
                while not stop.is_set():
                    sent = time.monotonic()
                    status = await get()
                    if revoked_at and sent > revoked_at[0]:
                        after.append(status)

            crowd_tasks = [asyncio.create_task(hammer()) for _ in range(_CONNECTIONS)]
            await asyncio.sleep(0.5)
            async with admin.delete(url + f"/v1/keys/{key['key_id']}", headers=_ADMIN) as r:
                assert r.status == 204
            revoked_at.append(time.monotonic())
            deadline = time.monotonic() + 60
            while len(after) < 400 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*crowd_tasks)
            assert len(after) >= 400
            assert after.count(200) == 0 and set(after) == {401}, sorted(set(after))
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()


@pytest.mark.slow
async def test_a_revoked_admin_key_cannot_mint_even_racing_its_revocation(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(settings, port, log, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_serving(proc, log)
        async with aiohttp.ClientSession() as http:
            status, key = await _post(http, url + "/v1/keys", _ADMIN, {"role": "admin", "name": "rogue"})
            assert status == 201
            rogue = {"Authorization": f"Bearer {key['key']}"}
            for _ in range(20):  # warm both workers
                assert (await _post(http, url + "/v1/keys", rogue, {"role": "admin", "name": "warm"}))[0] == 201

            async def mint() -> tuple[int, Any]:
                return await _post(http, url + "/v1/keys", rogue, {"role": "admin", "name": "minted"})

            async def revoke() -> int:
                await asyncio.sleep(0.05)
                async with http.delete(url + f"/v1/keys/{key['key_id']}?cascade=true", headers=_ADMIN) as r:
                    return r.status

            *mints, revoked = await asyncio.gather(*(mint() for _ in range(60)), revoke())
            assert revoked == 204
            assert {s for s, _ in mints} <= {201, 401}
            # after: the key mints nothing, and whatever it minted in the race is dead too
            status, body = await mint()
            assert (status, body["code"]) == (401, "UNAUTHORIZED")
            minted = [b for s, b in mints if s == 201]
            for child in minted:
                async with http.get(url + "/v1/tenants/none", headers={"Authorization": f"Bearer {child['key']}"}) as r:
                    assert r.status == 401, child
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()
