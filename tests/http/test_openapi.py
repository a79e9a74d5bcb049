"""``/openapi.json``: valid OpenAPI 3.1, every route of the app and of docs/api.md, every error code."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from dropgate.errors import ERRORS
from dropgate.http.app import create_app
from dropgate.http.openapi import common_errors
from dropgate.http.routes import ROUTE_TABLES
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.contract import CONTRACT, PENDING, shape

SPECS = [spec for table in ROUTE_TABLES for spec in table.specs]


@pytest.fixture
async def doc(api: Api) -> dict[str, Any]:
    status, body = await api.call("GET", "/openapi.json", headers={})
    assert status == 200
    assert isinstance(body, dict)
    return body


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), p): op for p, ops in doc["paths"].items() for m, op in ops.items()}


async def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the 3.1 meta-schema or a broken $ref
    ids = [op["operationId"] for op in _operations(doc).values()]
    assert len(ids) == len(set(ids))


async def test_every_route_the_app_serves_is_documented_and_nothing_else(
        doc: dict[str, Any], runtime: Runtime) -> None:
    app = create_app(runtime)
    served = {shape(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    documented = {shape(m, p) for m, p in _operations(doc)}
    assert served == documented


async def test_every_route_of_the_contract_is_documented(doc: dict[str, Any]) -> None:
    documented = {shape(m, p) for m, p in _operations(doc)}
    missing = sorted(CONTRACT - PENDING - documented)
    assert not missing, f"docs/api.md routes missing from /openapi.json: {missing}"
    merged = sorted(PENDING & documented)
    assert not merged, f"now documented: move these out of tests/support/contract.py PENDING: {merged}"


async def test_every_error_code_a_route_declares_is_listed_under_its_status(doc: dict[str, Any]) -> None:
    ops = _operations(doc)
    for spec in SPECS:
        op = ops[(spec.method, spec.path)]
        assert op["x-dropgate-auth"] == spec.auth
        for err in (*common_errors(spec), *spec.errors):
            assert err.code in ERRORS
            response = op["responses"][str(err.status)]
            assert err.code in response["x-error-codes"], (spec.path, err.code)
            assert "X-Request-Id" in response["headers"]
        assert "X-Request-Id" in op["responses"][str(spec.status)]["headers"]
        if spec.auth != "public":
            assert "UNAUTHORIZED" in op["responses"]["401"]["x-error-codes"]
            assert "FORBIDDEN" in op["responses"]["403"]["x-error-codes"]
        if spec.auth == "tenant":
            assert "TENANT_REQUIRED" in op["responses"]["400"]["x-error-codes"]
            assert "NOT_FOUND" in op["responses"]["404"]["x-error-codes"]


async def test_request_and_response_schemas_come_from_the_structs(doc: dict[str, Any]) -> None:
    ops = _operations(doc)
    redeem = ops[("POST", "/v1/invites/{code}/redeem")]
    assert redeem["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InviteRedeem"}
    assert redeem["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InviteRedemption"}
    assert set(redeem["responses"]["409"]["x-error-codes"]) >= {
        "ALREADY_USED", "EXHAUSTED", "EXPIRED", "INACTIVE"}
    schemas = doc["components"]["schemas"]
    assert schemas["InviteCreate"]["additionalProperties"] is False
    assert schemas["InviteCreate"]["required"] == ["max_uses"]
    # a PATCH needs a body (an empty one is a 400), though every field in it is optional
    assert ops[("PATCH", "/v1/invites/{code}")]["requestBody"]["required"] is True
    assert ops[("POST", "/v1/invites")]["requestBody"]["required"] is True
    # readyz answers 503 with its own body when not ready
    ready_503 = ops[("GET", "/readyz")]["responses"]["503"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Readiness"} in ready_503["anyOf"]
