"""A PATCH without a JSON object body is a 400 VALIDATION_ERROR, on every PATCH route (#14).

An empty body used to be read as ``{}`` (every field of a PATCH is optional) and answered
200, so a client that lost its body on the way was told its change had been made. Each
PATCH route is checked through the real app: an empty body (with and without a JSON
content type), ``not json`` and a JSON array are refused and change nothing; ``{}``
still answers 200 and changes nothing, and a real change still applies.
"""

from __future__ import annotations

from typing import Any

from dropgate.http.routes import ROUTE_TABLES
from tests.conftest import Api

# Each PATCH route: how to create the entity it changes, its path, and a real change.
CASES: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "/v1/invites/{code}": ("/v1/invites", {"code": "PB", "max_uses": 5},
                           "/v1/invites/PB", {"max_uses": 7}),
    "/v1/promos/{code}": ("/v1/promos", {"code": "PB", "bonus": {"kind": "fixed", "amount": "1"},
                                         "currency": "usd"},
                          "/v1/promos/PB", {"max_uses": 7}),
    "/v1/offers/{offer_id}": ("/v1/offers", {"offer_id": "pb", "event_id": "e", "name": "PB",
                                             "price": "1", "currency": "usd", "inventory_total": 5},
                              "/v1/offers/pb", {"inventory_total": 7}),
    "/v1/orders/{order_id}": ("/v1/orders", {"order_id": "pb", "items": [{"sku": "s", "quantity": 1}],
                                             "total": "1", "currency": "usd"},
                              "/v1/orders/pb", {"status": "shipped"}),
    "/v1/campaigns/{campaign_id}": ("/v1/campaigns", {"campaign_id": "pb", "types": ["tm"]},
                                    "/v1/campaigns/pb", {"low_watermark": 5}),
}
BAD_BODIES: list[tuple[bytes | None, dict[str, str]]] = [
    (None, {}),  # no body at all
    (b"", {"Content-Type": "application/json"}),
    (b"not json", {"Content-Type": "application/json"}),
    (b"[]", {"Content-Type": "application/json"}),
    (b'[{"active": false}]', {"Content-Type": "application/json"}),
]


def test_every_patch_route_is_covered() -> None:
    patch_routes = {spec.path for table in ROUTE_TABLES for spec in table.specs if spec.method == "PATCH"}
    assert patch_routes == set(CASES)


async def _raw(api: Api, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, Any]:
    response = await api.client.request("PATCH", path, data=data, headers={**api.service, **headers})
    return response.status, await response.json()


async def test_patch_without_a_json_object_is_400_and_changes_nothing(api: Api) -> None:
    for route, (create_path, create_body, path, change) in CASES.items():
        status, created = await api.call("POST", create_path, json=create_body)
        assert status == 201, (route, created)
        status, before = await api.call("GET", path)
        assert status == 200, (route, before)
        for data, headers in BAD_BODIES:
            status, body = await _raw(api, path, data, headers)
            assert (status, body["code"]) == (400, "VALIDATION_ERROR"), (route, data, body)
            assert set(body) == {"error", "code", "details"}
        status, after = await api.call("GET", path)
        assert (status, after) == (200, before), route
        # an empty object is a valid PATCH that changes nothing
        status, same = await _raw(api, path, b"{}", {"Content-Type": "application/json"})
        assert (status, same) == (200, before), route
        # and a real change still applies
        status, changed = await api.call("PATCH", path, json=change)
        assert status == 200, (route, changed)
        field, value = next(iter(change.items()))
        got = changed["inventory"]["total"] if field == "inventory_total" else changed[field]
        assert got == value, route


async def test_auth_is_still_checked_before_the_body(api: Api) -> None:
    # a missing key is a 401 whatever the body: the body is not looked at first
    for path in ("/v1/invites/X", "/v1/promos/X", "/v1/offers/x"):
        response = await api.client.request("PATCH", path, data=b"")
        assert response.status == 401, path
