"""Who may register and delete webhook endpoints (#18): the scope ``webhooks:write``;
listing them and their deliveries is a read."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dropgate.http.scopes import route_scope
from dropgate.models.scopes import SCOPES
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.webhooks import Receiver, receiver, webhook_settings

__all__ = ["receiver"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings)


def test_routes_need_webhooks_write() -> None:
    assert "webhooks:write" in SCOPES
    assert route_scope("POST", "/v1/webhook-endpoints") == "webhooks:write"
    assert route_scope("DELETE", "/v1/webhook-endpoints/we_1") == "webhooks:write"
    assert route_scope("GET", "/v1/webhook-endpoints/we_1/deliveries") == "read"


async def test_a_key_without_the_scope_gets_403(api: Api, receiver: Receiver) -> None:
    body = {"url": receiver.url, "events": ["*"]}
    # every other scope, webhooks:write excepted
    others = await api.new_key("others", scopes=[s for s in SCOPES if s != "webhooks:write"])
    status, refused = await api.call("POST", "/v1/webhook-endpoints", headers=others, json=body)
    assert (status, refused["code"], refused["details"]) == (403, "FORBIDDEN", {"scope": "webhooks:write"})
    status, page = await api.call("GET", "/v1/webhook-endpoints", headers=others)
    assert status == 200 and page["data"] == [], page  # nothing was registered

    hooks = await api.new_key("hooks", scopes=["webhooks:write"])
    status, created = await api.call("POST", "/v1/webhook-endpoints", headers=hooks, json=body)
    assert status == 201, created
    endpoint = f"/v1/webhook-endpoints/{created['endpoint_id']}"
    status, refused = await api.call("DELETE", endpoint, headers=others)
    assert (status, refused["details"]) == (403, {"scope": "webhooks:write"})
    status, refused = await api.call("GET", "/v1/webhook-endpoints", headers=hooks)
    assert (status, refused["details"]) == (403, {"scope": "read"})
    status, _ = await api.call("DELETE", endpoint, headers=hooks)
    assert status == 204
    # a key with every scope (none named) still registers
    status, _ = await api.call("POST", "/v1/webhook-endpoints", json=body)
    assert status == 201
