"""Invite codes: creation, patching, expiry, inactive codes, validation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.conftest import Api


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def test_create_get_patch(api: Api) -> None:
    status, created = await api.call("POST", "/v1/invites", json={"max_uses": 3})
    assert status == 201
    code = created["code"]
    assert len(code) == 10 and created["used_count"] == 0 and created["active"] is True
    status, got = await api.call("GET", f"/v1/invites/{code}")
    assert status == 200 and got == created
    expiry = _iso(datetime.now(UTC) + timedelta(days=1))
    status, patched = await api.call("PATCH", f"/v1/invites/{code}",
                                     json={"max_uses": 5, "expires_at": expiry})
    assert status == 200 and patched["max_uses"] == 5 and patched["expires_at"] is not None
    status, cleared = await api.call("PATCH", f"/v1/invites/{code}", json={"expires_at": None})
    assert cleared["expires_at"] is None and cleared["max_uses"] == 5
    status, body = await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 1})
    assert status == 409 and body["code"] == "ALREADY_EXISTS"


async def test_expired_code_refuses(api: Api) -> None:
    soon = _iso(datetime.now(UTC) + timedelta(milliseconds=300))
    await api.call("POST", "/v1/invites", json={"code": "SOON", "max_uses": 0, "expires_at": soon})
    status, _ = await api.call("POST", "/v1/invites/SOON/redeem", json={"user_id": "a"})
    assert status == 200
    await asyncio.sleep(0.4)
    status, body = await api.call("POST", "/v1/invites/SOON/redeem", json={"user_id": "b"})
    assert (status, body["code"]) == (409, "EXPIRED")
    past = _iso(datetime.now(UTC) - timedelta(days=1))
    await api.call("POST", "/v1/invites", json={"code": "PAST", "max_uses": 0, "expires_at": past})
    status, body = await api.call("POST", "/v1/invites/PAST/redeem", json={"user_id": "a"})
    assert (status, body["code"]) == (409, "EXPIRED")


async def test_inactive_code_refuses_and_reactivates(api: Api) -> None:
    await api.call("POST", "/v1/invites", json={"code": "OFF", "max_uses": 0, "active": False})
    status, body = await api.call("POST", "/v1/invites/OFF/redeem", json={"user_id": "a"})
    assert (status, body["code"]) == (409, "INACTIVE")
    await api.call("PATCH", "/v1/invites/OFF", json={"active": True})
    status, body = await api.call("POST", "/v1/invites/OFF/redeem", json={"user_id": "a"})
    assert status == 200 and body == {"code": "OFF", "user_id": "a", "used_count": 1}


async def test_max_uses_cannot_go_below_used_count(api: Api) -> None:
    await api.call("POST", "/v1/invites", json={"code": "TWO", "max_uses": 2})
    for user in ("a", "b"):
        await api.call("POST", "/v1/invites/TWO/redeem", json={"user_id": user})
    status, body = await api.call("PATCH", "/v1/invites/TWO", json={"max_uses": 1})
    assert (status, body["code"]) == (409, "CONFLICT")
    status, body = await api.call("GET", "/v1/invites/TWO")
    assert body["max_uses"] == 2
    status, body = await api.call("POST", "/v1/invites/TWO/redeem", json={"user_id": "c"})
    assert (status, body["code"]) == (409, "EXHAUSTED")


async def test_unknown_code_is_404(api: Api) -> None:
    status, body = await api.call("POST", "/v1/invites/NOPE/redeem", json={"user_id": "a"})
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await api.call("PATCH", "/v1/invites/NOPE", json={"active": False})
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_bad_bodies_are_400_naming_the_field(api: Api) -> None:
    cases = [
        ({"max_uses": -1}, "max_uses"),
        ({"max_uses": "7"}, "max_uses"),
        ({"max_uses": 1, "surprise": True}, "surprise"),
        ({"code": "a:b", "max_uses": 1}, "code"),
        ({"code": "{p1}", "max_uses": 1}, "code"),
        ({"max_uses": 1, "expires_at": "tomorrow"}, "expires_at"),
        ({}, None),
    ]
    for body, field in cases:
        status, answer = await api.call("POST", "/v1/invites", json=body)
        assert status == 400 and answer["code"] == "VALIDATION_ERROR", (body, answer)
        if field:
            assert answer["details"]["field"] == field, (body, answer)
    response = await api.client.post("/v1/invites", data=b"{not json", headers=api.service)
    assert response.status == 400 and (await response.json())["code"] == "VALIDATION_ERROR"
    status, answer = await api.call("POST", "/v1/invites/a:b/redeem", json={"user_id": "x"})
    assert status == 400 and answer["details"]["field"] == "code"
    status, answer = await api.call("POST", "/v1/invites/OK/redeem", json={"user_id": "x{p2}"})
    assert status == 400 and answer["details"]["field"] == "user_id"
