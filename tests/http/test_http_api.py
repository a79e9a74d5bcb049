"""The HTTP skeleton: auth and tenancy, the error shape, request ids, ops endpoints."""

from __future__ import annotations

from typing import Any

from dropgate.http.routes import ROUTE_TABLES
from dropgate.persistence.persister import Persister
from tests.conftest import Api


async def test_no_key_unknown_key_and_revoked_key_are_401(api: Api) -> None:
    status, body = await api.call("GET", "/v1/invites/X", headers={})
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    assert set(body) == {"error", "code", "details"}
    status, body = await api.call("GET", "/v1/invites/X", headers={"Authorization": "Bearer dg_k1_nope"})
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    status, key = await api.call("POST", "/v1/keys", headers=api.admin,
                                 json={"role": "service", "tenant_id": "acme", "name": "svc"})
    assert status == 201 and key["key"].startswith("dg_")
    status, _ = await api.call("DELETE", f"/v1/keys/{key['key_id']}", headers=api.admin)
    assert status == 204
    status, body = await api.call("GET", "/v1/invites/X",
                                  headers={"Authorization": f"Bearer {key['key']}"})
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    status, body = await api.call("DELETE", f"/v1/keys/{key['key_id']}", headers=api.admin)
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_roles_and_tenancy(api: Api) -> None:
    # a service key on an admin route
    status, body = await api.call("POST", "/v1/tenants", json={"tenant_id": "x", "name": "x"})
    assert (status, body["code"]) == (403, "FORBIDDEN")
    # admin on a tenant route without X-Tenant-Id
    status, body = await api.call("GET", "/v1/invites/X", headers=api.admin)
    assert (status, body["code"]) == (400, "TENANT_REQUIRED")
    # admin acting on a tenant
    status, body = await api.call("POST", "/v1/invites", headers=api.as_admin_of("acme"),
                                  json={"code": "ADMIN", "max_uses": 1})
    assert status == 201
    status, body = await api.call("GET", "/v1/invites/X", headers=api.as_admin_of("ghost"))
    assert (status, body["code"]) == (404, "NOT_FOUND")
    # a service key naming another tenant
    status, body = await api.call("GET", "/v1/invites/ADMIN",
                                  headers={**api.service, "X-Tenant-Id": "other"})
    assert (status, body["code"]) == (403, "FORBIDDEN")
    # another tenant's invite is 404, not 403
    other_key = await api.new_tenant("other")
    status, body = await api.call("GET", "/v1/invites/ADMIN",
                                  headers={"Authorization": f"Bearer {other_key}"})
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await api.call("POST", "/v1/invites/ADMIN/redeem", json={"user_id": "u"},
                                  headers={"Authorization": f"Bearer {other_key}"})
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_tenants_endpoints(api: Api) -> None:
    status, body = await api.call("POST", "/v1/tenants", headers=api.admin, json={
        "tenant_id": "trial", "name": "Trial Co", "subscription_status": "trialing",
        "trial_end": "2030-01-01T00:00:00Z"})
    assert status == 201, body
    assert body == {"tenant_id": "trial", "name": "Trial Co", "subscription_status": "trialing",
                    "trial_end": "2030-01-01T00:00:00Z", "balance": {}}
    status, body = await api.call("GET", "/v1/tenants/trial", headers=api.admin)
    assert status == 200 and body["subscription_status"] == "trialing"
    status, body = await api.call("PUT", "/v1/tenants/trial/subscription", headers=api.admin,
                                  json={"subscription_status": "suspended"})
    assert status == 200 and body["subscription_status"] == "suspended" and body["trial_end"] is None
    status, body = await api.call("POST", "/v1/tenants", headers=api.admin,
                                  json={"tenant_id": "trial", "name": "again"})
    assert (status, body["code"]) == (409, "ALREADY_EXISTS")
    for bad in ({"tenant_id": "t", "subscription_status": "gold"},
                {"tenant_id": "t", "subscription_status": "trialing"},
                {"tenant_id": "bad id"}):
        status, body = await api.call("POST", "/v1/tenants", headers=api.admin, json=bad)
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), bad
    status, body = await api.call("GET", "/v1/tenants/nobody", headers=api.admin)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await api.call("POST", "/v1/keys", headers=api.admin,
                                  json={"role": "service", "tenant_id": "nobody", "name": "svc"})
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await api.call("POST", "/v1/keys", headers=api.admin, json={"role": "admin"})
    assert status == 201 and body["role"] == "admin"
    status, body = await api.call("GET", "/v1/tenants/trial",
                                  headers={"Authorization": f"Bearer {body['key']}"})
    assert status == 200


async def test_unknown_route_wrong_method_and_large_body(api: Api) -> None:
    status, body = await api.call("GET", "/v1/nothing-here")
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await api.call("DELETE", "/v1/invites")
    assert (status, body["code"]) == (405, "METHOD_NOT_ALLOWED")
    big = b'{"max_uses": 1, "code": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await api.client.post("/v1/invites", data=big,
                                      headers={**api.service, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["code"] == "PAYLOAD_TOO_LARGE"


async def test_request_id_is_echoed_or_made(api: Api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response = await api.client.get("/v1/invites/X")
    assert len(response.headers["X-Request-Id"]) == 32
    response = await api.client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert response.headers["X-Request-Id"] != "bad id <script>"


async def test_ops_endpoints(api: Api, persister: Persister) -> None:
    status, body = await api.call("GET", "/healthz", headers={})
    assert (status, body) == (200, {"status": "ok"})
    status, body = await api.call("GET", "/readyz", headers={})  # the tenant's events, unpersisted
    assert status == 503 and body["unpersisted_partitions"] and body["status"] == "unavailable", body
    await persister.drain()
    status, body = await api.call("GET", "/readyz", headers={})
    assert status == 200 and body["redis"] and body["postgres"] and body["status"] == "ready"
    await api.call("GET", "/v1/invites/X")
    status, text = await api.call("GET", "/metrics", headers={})
    assert status == 200 and "dropgate_http_requests_total" in text
    assert 'route="/v1/invites/{code}"' in text


async def test_openapi_covers_every_route(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json", headers={})
    assert status == 200 and doc["openapi"].startswith("3.1")
    declared = {(s.method.lower(), s.path) for t in ROUTE_TABLES for s in t.specs}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert declared == documented
    redeem: dict[str, Any] = doc["paths"]["/v1/invites/{code}/redeem"]["post"]
    assert set(redeem["responses"]["409"]["x-error-codes"]) >= {"ALREADY_USED", "EXHAUSTED",
                                                                 "EXPIRED", "INACTIVE"}
    for component in doc["components"]["schemas"].values():
        assert "type" in component or "anyOf" in component or "enum" in component
    # every path in docs/api.md's tenant/invite sections is present
    for path in ("/v1/tenants", "/v1/tenants/{tenant_id}", "/v1/tenants/{tenant_id}/subscription",
                 "/v1/keys", "/v1/keys/{key_id}", "/v1/invites", "/v1/invites/{code}",
                 "/v1/invites/{code}/redeem", "/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert path in doc["paths"], path
