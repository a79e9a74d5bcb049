"""Invites (v1.1): last_used_at, who used a code, and an eligibility check that changes nothing."""

from __future__ import annotations

import asyncio

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api


async def eligibility(api: Api, code: str, user: str) -> tuple[int, dict]:
    return await api.call("GET", f"/v1/invites/{code}/eligibility?user_id={user}")


async def test_eligibility_matches_redeem_and_changes_nothing(api: Api, runtime: Runtime) -> None:
    await api.call("POST", "/v1/invites", json={"code": "EL", "max_uses": 2})
    log = runtime.keys.tenant("acme").log
    before = await runtime.redis.xlen(log)
    for _ in range(3):
        assert await eligibility(api, "EL", "u1") == (200, {"eligible": True, "reason": None})
    assert await runtime.redis.xlen(log) == before  # no event: nothing changed
    _, inv = await api.call("GET", "/v1/invites/EL")
    assert inv["used_count"] == 0 and inv["last_used_at"] is None
    await api.call("POST", "/v1/invites/EL/redeem", json={"user_id": "u1"})
    assert await eligibility(api, "EL", "u1") == (200, {"eligible": False, "reason": "ALREADY_USED"})
    await api.call("POST", "/v1/invites/EL/redeem", json={"user_id": "u2"})
    assert await eligibility(api, "EL", "u3") == (200, {"eligible": False, "reason": "EXHAUSTED"})
    status, body = await api.call("POST", "/v1/invites/EL/redeem", json={"user_id": "u3"})
    assert status == 409 and body["code"] == "EXHAUSTED"  # the check told the truth
    await api.call("PATCH", "/v1/invites/EL", json={"active": False})
    assert (await eligibility(api, "EL", "u3"))[1]["reason"] == "INACTIVE"
    await api.call("POST", "/v1/invites", json={"code": "OLD", "max_uses": 0,
                                                "expires_at": "2001-01-01T00:00:00Z"})
    assert (await eligibility(api, "OLD", "u3"))[1]["reason"] == "EXPIRED"
    status, body = await eligibility(api, "NOPE", "u1")
    assert status == 404
    status, body = await api.call("GET", "/v1/invites/EL/eligibility")
    assert status == 400 and body["details"]["field"] == "user_id"
    _, inv = await api.call("GET", "/v1/invites/EL")
    assert inv["used_count"] == 2 and inv["last_used_at"] is not None


async def test_concurrent_redeems_and_the_uses_list(api: Api, persister: Persister) -> None:
    await api.call("POST", "/v1/invites", json={"code": "CROWD", "max_uses": 150})
    results = await asyncio.gather(*(
        api.call("POST", "/v1/invites/CROWD/redeem", json={"user_id": f"u{i % 200}"})
        for i in range(300)))
    ok = [b for s, b in results if s == 200]
    assert len(ok) == 150
    await persister.drain()
    users: list[str] = []
    cursor = ""
    while True:
        status, page = await api.call("GET", f"/v1/invites/CROWD/uses?limit=40&cursor={cursor}")
        assert status == 200
        users += [u["user_id"] for u in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(users) == len(set(users)) == 150
    _, inv = await api.call("GET", "/v1/invites/CROWD")
    _, listed = await api.call("GET", "/v1/invites?limit=1")
    assert listed["data"][0]["last_used_at"] == inv["last_used_at"]
