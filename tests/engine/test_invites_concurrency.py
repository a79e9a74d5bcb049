"""Invite redemptions under a crowd: exact counts in Redis, the same rows in PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import random

import pytest

from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api


async def _pg_users(runtime: Runtime, tenant: str, code: str) -> set[str]:
    rows = await runtime.pool.fetch(
        "SELECT user_id FROM invite_code_uses WHERE tenant_id = $1 AND code = $2", tenant, code)
    return {r["user_id"] for r in rows}


@pytest.mark.cluster
async def test_500_concurrent_redemptions_of_a_7_use_code(api: Api, runtime: Runtime,
                                                           persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/invites", json={"code": "SEVEN", "max_uses": 7})
    assert status == 201
    users = [f"u{i}" for i in range(250)] * 2
    random.Random(1).shuffle(users)

    answers = await asyncio.gather(*(
        api.call("POST", "/v1/invites/SEVEN/redeem", json={"user_id": u}) for u in users))

    ok = [body for status, body in answers if status == 200]
    refused = collections.Counter(body["code"] for status, body in answers if status != 200)
    assert len(ok) == 7
    assert all(status in (200, 409) for status, _ in answers)
    assert set(refused) <= {"EXHAUSTED", "ALREADY_USED"} and sum(refused.values()) == 493
    winners = {body["user_id"] for body in ok}
    assert len(winners) == 7  # nobody twice
    assert sorted(body["used_count"] for body in ok) == list(range(1, 8))

    status, invite = await api.call("GET", "/v1/invites/SEVEN")
    assert invite["used_count"] == 7
    redis_users = {text(u) for u in await runtime.redis.smembers(
        runtime.keys.tenant("acme").invite_users("SEVEN"))}
    assert redis_users == winners

    await persister.drain()
    assert await _pg_users(runtime, "acme", "SEVEN") == winners
    assert await runtime.pool.fetchval(
        "SELECT used_count FROM invite_codes WHERE tenant_id = 'acme' AND code = 'SEVEN'") == 7


async def test_unlimited_code_300_users_each_twice(api: Api, runtime: Runtime,
                                                  persister: Persister) -> None:
    await api.call("POST", "/v1/invites", json={"code": "OPEN", "max_uses": 0})
    users = [f"user-{i}" for i in range(300)]
    answers = await asyncio.gather(*(
        api.call("POST", "/v1/invites/OPEN/redeem", json={"user_id": u}) for u in users + users))
    codes = collections.Counter(200 if s == 200 else b["code"] for s, b in answers)
    assert codes == {200: 300, "ALREADY_USED": 300}
    _, invite = await api.call("GET", "/v1/invites/OPEN")
    assert invite["used_count"] == 300

    await persister.drain()
    assert await _pg_users(runtime, "acme", "OPEN") == set(users)
    count = await runtime.pool.fetchval(
        "SELECT count(*) FROM invite_code_uses WHERE tenant_id = 'acme' AND code = 'OPEN'")
    assert count == 300


async def test_deactivation_that_commits_first_wins(api: Api, runtime: Runtime) -> None:
    """No redemption event may follow the deactivation event in the partition's log."""
    await api.call("POST", "/v1/invites", json={"code": "RACE", "max_uses": 0})

    async def redeem(i: int) -> tuple[int, dict[str, str]]:
        return await api.call("POST", "/v1/invites/RACE/redeem", json={"user_id": f"r{i}"})

    tasks = [asyncio.create_task(redeem(i)) for i in range(300)]
    await asyncio.sleep(0.02)
    status, _ = await api.call("PATCH", "/v1/invites/RACE", json={"active": False})
    assert status == 200
    answers = await asyncio.gather(*tasks)
    assert {b.get("code") for s, b in answers if s != 200} <= {"INACTIVE"}

    tk = runtime.keys.tenant("acme")
    entries = await runtime.redis.xrange(tk.log)
    kinds = [(text(f[b"t"]), text(f[b"d"])) for _, f in entries if text(f[b"e"]) == "invite:acme:RACE"]
    deactivated_at = next(i for i, (t, d) in enumerate(kinds) if t == "invite.saved" and '"active":false' in d)
    assert all(t != "invite.redeemed" for t, _ in kinds[deactivated_at:])
    succeeded = sum(1 for s, _ in answers if s == 200)
    assert succeeded == sum(1 for t, _ in kinds if t == "invite.redeemed")
