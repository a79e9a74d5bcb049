"""Redis at maxmemory (noeviction): writes answer 503 UNAVAILABLE and change nothing."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from dropgate.http.app import create_app
from dropgate.runtime import open_runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.apiserver import ApiServer


async def test_out_of_memory_is_503_and_nothing_changes(
    make_settings: Callable[..., Settings], private_redis_url: Callable[..., str], isolated: str
) -> None:
    url = private_redis_url("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
    async with open_runtime(make_settings(redis_url=url), run_persister=False) as runtime:
        await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
        await runtime.invites.create("t1", code="C", max_uses=0, expires_at_ms=None, active=True)
        filler = Redis.from_url(url)
        for i in range(40):  # fill the server with keys of this test ...
            await filler.set(f"filler:{i}", b"x" * 100_000)
        await filler.config_set("maxmemory", "1mb")  # ... then lower the limit below what it holds
        await filler.aclose()
        client = TestClient(ApiServer(create_app(runtime)))
        await client.start_server()
        try:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Tenant-Id": "t1"}
            r = await client.post("/v1/invites/C/redeem", json={"user_id": "u1"}, headers=headers)
            body = await r.json()
            assert (r.status, body["code"]) == (503, "UNAVAILABLE"), body
            state = await runtime.invites.get("t1", "C")
            assert state.used_count == 0
            assert not await runtime.redis.sismember(runtime.keys.tenant("t1").invite_users("C"), "u1")
            r = await client.get("/v1/invites/C", headers=headers)  # reads still answer
            assert r.status == 200
        finally:
            await client.close()
