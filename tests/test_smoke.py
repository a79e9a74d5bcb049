from tests.conftest import Api


async def test_invite_roundtrip(api: Api) -> None:
    status, body = await api.call("POST", "/v1/invites", json={"code": "HELLO", "max_uses": 2})
    assert status == 201, body
    status, body = await api.call("POST", "/v1/invites/HELLO/redeem", json={"user_id": "u1"})
    assert status == 200, body
    assert body["used_count"] == 1
