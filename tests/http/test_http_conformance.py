"""HTTP-layer fixes found by the schema-driven tests (tests/client/test_api_schema.py)."""

from __future__ import annotations

from tests.conftest import Api


async def test_405_lists_the_allowed_methods(api: Api) -> None:
    response = await api.client.delete("/v1/invites", headers=api.service)
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "POST"}  # v1.1: GET lists
    assert (await response.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_401_names_the_auth_scheme(api: Api) -> None:
    response = await api.client.get("/v1/invites/X")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_service_key_with_an_empty_or_malformed_tenant_header_is_400(api: Api) -> None:
    for value in ("", "bad id", "x" * 65):
        status, body = await api.call("GET", "/v1/invites/X", headers={**api.service, "X-Tenant-Id": value})
        assert (status, body["code"], body["details"]) == (400, "VALIDATION_ERROR", {"field": "X-Tenant-Id"})
    status, body = await api.call("GET", "/v1/invites/X", headers={**api.service, "X-Tenant-Id": "acme"})
    assert (status, body["code"]) == (404, "NOT_FOUND")  # its own tenant: fine


async def test_free_text_refuses_nul_which_postgresql_cannot_store(api: Api) -> None:
    status, body = await api.call("POST", "/v1/tenants", headers=api.admin,
                                  json={"tenant_id": "nul", "name": "a\u0000b"})
    assert (status, body["code"], body["details"]["field"]) == (400, "VALIDATION_ERROR", "name")
    status, body = await api.call("POST", "/v1/tenants", headers=api.admin,
                                  json={"tenant_id": "long", "name": "n" * 201})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
