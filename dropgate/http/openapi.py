"""``/openapi.json`` (OpenAPI 3.1), generated from the route declarations and structs."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from dropgate import __version__
from dropgate.engine.errors import (
    DropgateError,
    Forbidden,
    Internal,
    NotFound,
    PayloadTooLarge,
    PersistenceLagging,
    TenantRequired,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from dropgate.http.routing import RouteSpec
from dropgate.models.common import ErrorBody

_PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{name}"


def _common_errors(spec: RouteSpec) -> list[type[DropgateError]]:
    errors: list[type[DropgateError]] = [Internal, Unavailable]
    if spec.body is not None or spec.request_content is not None or "{" in spec.path:
        errors.append(ValidationError)
    if spec.body is not None:
        errors.append(PayloadTooLarge)
    if spec.auth != "public":
        errors += [Unauthorized, Forbidden]
    if spec.auth == "tenant":
        errors += [TenantRequired, NotFound]
    if spec.method in ("POST", "PUT", "PATCH", "DELETE") and spec.auth != "public":
        errors.append(PersistenceLagging)
    return errors


def build_openapi(specs: list[RouteSpec]) -> dict[str, Any]:
    types: set[Any] = {ErrorBody}
    for spec in specs:
        if spec.body is not None:
            types.add(spec.body)
        if spec.response is not None:
            types.add(spec.response)
    ordered = sorted(types, key=lambda t: getattr(t, "__name__", repr(t)))
    schemas, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    schema_of = dict(zip(ordered, schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = _PARAM_RE.sub(r"{\1}", spec.path)
        op: dict[str, Any] = {
            "operationId": spec.handler.__name__,
            "summary": spec.summary,
            "tags": [spec.tag],
        }
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}}
            for name in _PARAM_RE.findall(spec.path)
        ]
        params += [{"name": n, "in": "query", "required": req, "description": d,
                    "schema": {"type": "string"}} for n, d, req in spec.query]
        params += [{"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
                   for h in spec.headers]
        if spec.auth == "tenant":
            params.append({"name": "X-Tenant-Id", "in": "header", "required": False,
                           "description": "Required with an admin key",
                           "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}})
        if params:
            op["parameters"] = params
        if spec.auth != "public":
            op["security"] = [{"bearer": []}]
        if spec.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": schema_of[spec.body]}}}
        elif spec.request_content is not None:
            op["requestBody"] = {"required": True, "content": spec.request_content}
        ok: dict[str, Any] = {"description": "Success"}
        if spec.response is not None:
            ok["content"] = {spec.response_content_type: {"schema": schema_of[spec.response]}}
        responses: dict[str, Any] = {str(spec.status): ok}
        by_status: dict[int, list[str]] = {}
        for err in [*_common_errors(spec), *spec.errors]:
            codes = by_status.setdefault(err.status, [])
            if err.code not in codes:
                codes.append(err.code)
        for status, codes in sorted(by_status.items()):
            responses[str(status)] = {
                "description": "Error codes: " + ", ".join(codes),
                "x-error-codes": codes,
                "content": {"application/json": {"schema": {
                    "allOf": [{"$ref": _REF.format(name="ErrorBody")}],
                    "properties": {"code": {"enum": codes}},
                }}},
            }
        op["responses"] = responses
        paths.setdefault(path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "dropgate", "version": __version__,
                 "description": "High-traffic drops that cannot oversell, double-redeem or drift."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
