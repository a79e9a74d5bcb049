"""Every public event type the engine can produce today reaches a subscribed receiver,
signed, and the client's ``verify`` accepts it; the data carries API-shaped values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.offers import create_offer, purchase
from tests.support.webhooks import Receiver, receiver, register, webhook_settings

__all__ = ["receiver"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings)


async def _ok(api: Api, method: str, path: str, body: object = None, *, admin: bool = False) -> dict[str, object]:
    status, answer = await api.call(method, path, json=body, headers=api.admin if admin else None)
    assert status in (200, 201), (path, answer)
    return dict(answer)


async def test_every_type_delivered_and_verified(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    await register(api, receiver, ["*"])
    await _ok(api, "POST", "/v1/invites", {"code": "INV", "max_uses": 3})
    await _ok(api, "POST", "/v1/invites/INV/redeem", {"user_id": "u1"})
    await _ok(api, "POST", "/v1/promos", {"code": "P10", "bonus": {"kind": "fixed", "amount": "5"},
                                          "currency": "usd"})
    use = await _ok(api, "POST", "/v1/promos/P10/redeem", {"customer_id": "c1", "base_amount": "20"})
    await _ok(api, "DELETE", f"/v1/promos/P10/uses/{use['use_id']}")
    await create_offer(api, "o1", 10)
    status, paid = await purchase(api, "o1", "buyer1")
    assert status == 201, paid
    await _ok(api, "POST", f"/v1/sandbox/checkout/{paid['checkout_session_id']}/complete")
    status, dropped = await purchase(api, "o1", "buyer2")
    assert status == 201, dropped
    await _ok(api, "POST", f"/v1/sandbox/checkout/{dropped['checkout_session_id']}/expire")
    response = await api.client.post("/v1/campaigns/camp/codes?type=gift", data="A1\nA2\n",
                                      headers={**api.service, "Content-Type": "text/csv"})
    assert response.status == 200, await response.text()
    await _ok(api, "POST", "/v1/payments", {"amount": "100", "currency": "usd", "reference": "r1"})
    status, bob = await api.call("POST", "/v1/keys", headers=api.admin,
                                 json={"role": "service", "tenant_id": "acme", "name": "bob"})
    assert status == 201, bob
    as_bob = {"Authorization": f"Bearer {bob['key']}"}
    w = await _ok(api, "POST", "/v1/withdrawals", {"amount": "30", "currency": "usd", "initiated_by": "ann"})
    status, done = await api.call("POST", f"/v1/withdrawals/{w['withdrawal_id']}/approve",
                                  json={"approved_by": "bob"}, headers=as_bob)
    assert status == 200, done
    w2 = await _ok(api, "POST", "/v1/withdrawals", {"amount": "10", "currency": "usd", "initiated_by": "ann"})
    status, rejected = await api.call("POST", f"/v1/withdrawals/{w2['withdrawal_id']}/reject", json={},
                                      headers=as_bob)
    assert status == 200, rejected
    await _ok(api, "PUT", "/v1/tenants/acme/subscription", {"subscription_status": "past_due"}, admin=True)

    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    assert receiver.rejected == 0 and len(receiver.accepted) == len(receiver.hits)
    by_type = {e["type"]: e for e in receiver.accepted}
    assert set(by_type) >= {
        "invite.redeemed", "promo.redeemed", "promo.use_rolled_back", "purchase.created", "purchase.paid",
        "codes.uploaded", "withdrawal.created", "withdrawal.completed", "withdrawal.rejected",
        "tenant.subscription_changed",
    }, sorted(by_type)
    assert {"purchase.expired", "purchase.canceled"} & set(by_type), sorted(by_type)
    assert by_type["promo.redeemed"]["data"]["bonus_amount"] == "5.00"
    assert by_type["promo.redeemed"]["data"]["total_amount"] == "25.00"
    assert by_type["purchase.paid"]["data"]["purchase_id"] == paid["purchase_id"]
    assert by_type["purchase.paid"]["data"]["amount"] == "25.00"
    assert by_type["withdrawal.completed"]["data"]["approved_by"] == "bob"
    assert by_type["tenant.subscription_changed"]["data"]["subscription_status"] == "past_due"
    assert by_type["codes.uploaded"]["data"] == {"campaign_id": "camp", "type": "gift", "count": 2,
                                                 "uploaded_at": by_type["codes.uploaded"]["data"]["uploaded_at"]}
    created = [e for e in receiver.accepted if e["type"] == "purchase.created"]
    assert len(created) == 2  # once per purchase, not again when its session is attached or paid
    assert all(e["tenant_id"] == "acme" and e["created"].endswith("Z") for e in receiver.accepted)


async def test_only_subscribed_types(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    await register(api, receiver, ["promo.redeemed"])
    await _ok(api, "POST", "/v1/invites", {"code": "INV", "max_uses": 3})
    await _ok(api, "POST", "/v1/invites/INV/redeem", {"user_id": "u1"})
    await _ok(api, "POST", "/v1/promos", {"code": "P", "bonus": {"kind": "percent", "percent": "10"},
                                          "currency": "usd"})
    await _ok(api, "POST", "/v1/promos/P/redeem", {"customer_id": "c1", "base_amount": "20"})
    dispatcher = runtime.new_dispatcher(name="d1")
    try:
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()
    assert [e["type"] for e in receiver.accepted] == ["promo.redeemed"]
    assert receiver.accepted[0]["data"]["bonus_amount"] == "2.00"
