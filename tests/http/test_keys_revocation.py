"""Revocation is immediate (#21): once ``DELETE /v1/keys/{id}`` has answered, no process
of ``serve --workers 2`` serves the key, however warm its cache; a revoked admin key
cannot mint, not even with mints racing its revocation (cascade takes those too)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.hostile import Serve, revoke_under_warm_caches
from tests.support.seed import ADMIN as _ADMIN

_CONNECTIONS = 40


async def _post(http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
    async with http.post(url, headers=headers, json=body) as r:
        return r.status, await r.json()


@pytest.mark.slow
async def test_revocation_is_immediate_on_every_worker(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    serve = Serve(settings, tmp_path / "serve.log", workers=2)
    proc, url = serve.proc, serve.url
    try:
        serve.wait_serving()
        async with aiohttp.ClientSession() as admin:
            status, _ = await _post(admin, url + "/v1/tenants", _ADMIN, {"tenant_id": "acme", "name": "Acme"})
            assert status == 201
        # 40 kept-alive connections warmed with a fresh key, which keep using it while it
        # is revoked: of 400 requests or more after, none succeeds
        await revoke_under_warm_caches(url, _ADMIN, "acme", connections=_CONNECTIONS, after_n=400)
    finally:
        serve.stop()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()


@pytest.mark.slow
async def test_a_revoked_admin_key_cannot_mint_even_racing_its_revocation(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    serve = Serve(settings, tmp_path / "serve.log", workers=2)
    proc, url = serve.proc, serve.url
    try:
        serve.wait_serving()
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
        serve.stop()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
