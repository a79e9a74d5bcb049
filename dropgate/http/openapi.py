"""``/openapi.json`` (OpenAPI 3.1), generated from the route declarations and structs.

Every route of every table is an operation: its path and query parameters, its
request body and success answer as the msgspec structs' JSON Schemas, and one
response per error status listing every error code the route can answer (the
route's own plus those every route of its kind can meet: auth, tenancy,
validation, body size, backlog, outages), each with the ``X-Request-Id`` header
every answer carries. ``x-dropgate-auth`` names the key an operation needs.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from dropgate import __version__
from dropgate.errors import (
    DropgateError,
    Forbidden,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    Internal,
    NotFound,
    PayloadTooLarge,
    PersistenceLagging,
    TenantBusy,
    TenantRequired,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from dropgate.http.routing import RouteSpec
from dropgate.ids import ID_MAX_LENGTH, ID_PATTERN
from dropgate.models.common import ErrorBody

_PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{name}"
_ID_SCHEMA = {"type": "string", "pattern": ID_PATTERN, "minLength": 1, "maxLength": ID_MAX_LENGTH}
_REQUEST_ID = {"X-Request-Id": {
    "description": "The request's id (the client's own when it sent a valid one)",
    "required": True, "schema": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {
    "description": "Seconds to wait before retrying", "required": False,
    "schema": {"type": "string", "pattern": r"^\d+$"}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {
    "description": "The auth scheme (Bearer)", "required": True, "schema": {"type": "string"}}}


def common_errors(spec: RouteSpec) -> list[type[DropgateError]]:
    """The errors any route of this kind can answer, besides its declared ones."""
    errors: list[type[DropgateError]] = [Internal, Unavailable]
    if (spec.body is not None or spec.request_content is not None or "{" in spec.path or spec.query
            or spec.auth != "public"):  # API routes refuse unknown query parameters
        errors.append(ValidationError)
    if spec.body is not None or spec.request_content is not None:
        errors.append(PayloadTooLarge)
    if spec.auth != "public":
        errors += [Unauthorized, Forbidden]
    if spec.auth == "tenant":  # the tenant's admission line (http/admission.py) and its hot queues
        errors += [TenantRequired, NotFound, TenantBusy]
    if spec.method in ("POST", "PUT", "PATCH", "DELETE") and spec.auth != "public":
        errors.append(PersistenceLagging)
    if any(h.lower() == "idempotency-key" for h in spec.headers):
        errors += [IdempotencyKeyInUse, IdempotencyKeyReused]
    return errors


def error_codes(spec: RouteSpec) -> dict[int, list[str]]:
    """Status -> every error code the route can answer with it."""
    by_status: dict[int, list[str]] = {}
    for err in [*common_errors(spec), *spec.errors]:
        codes = by_status.setdefault(err.status, [])
        if err.code not in codes:
            codes.append(err.code)
    return dict(sorted(by_status.items()))


def _error_schema(codes: list[str]) -> dict[str, Any]:
    return {"allOf": [{"$ref": _REF.format(name="ErrorBody")}],
            "properties": {"code": {"enum": codes}}}


def _parameters(spec: RouteSpec) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": dict(_ID_SCHEMA)}
        for name in _PARAM_RE.findall(spec.path)
    ]
    params += [{"name": n, "in": "query", "required": req, "description": d,
                "schema": {"type": "string"}} for n, d, req in spec.query]
    params += [{"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
               for h in spec.headers]
    if spec.auth == "tenant":
        params.append({"name": "X-Tenant-Id", "in": "header", "required": False,
                       "description": "The tenant acted on: required with an admin key; "
                                      "a service key's own tenant or left out",
                       "schema": dict(_ID_SCHEMA)})
    return params


def _operation(spec: RouteSpec, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": spec.handler.__name__,
        "summary": spec.summary,
        "tags": [spec.tag],
        "x-dropgate-auth": spec.auth,
    }
    params = _parameters(spec)
    if params:
        op["parameters"] = params
    op["security"] = [] if spec.auth == "public" else [{"bearer": []}]
    if spec.body is not None:
        # a POST body whose fields are all optional may be left out (the server reads it as
        # {}); a PATCH always needs one
        required = spec.method == "PATCH" or any(f.required for f in msgspec.structs.fields(spec.body))
        op["requestBody"] = {"required": required, "content": {
            "application/json": {"schema": schema_of[spec.body]}}}
    elif spec.request_content is not None:
        op["requestBody"] = {"required": True, "content": spec.request_content}
    ok: dict[str, Any] = {"description": "Success", "headers": dict(_REQUEST_ID)}
    if spec.response is not None:
        ok_schemas = [schema_of[t] for t in (spec.response, *spec.alternatives)]
        ok["content"] = {spec.response_content_type: {
            "schema": ok_schemas[0] if len(ok_schemas) == 1 else {"anyOf": ok_schemas}}}
    responses: dict[str, Any] = {str(spec.status): ok}
    codes_by_status = error_codes(spec)
    for status in sorted({*codes_by_status, *spec.other_responses}):
        codes = codes_by_status.get(status, [])
        headers = dict(_REQUEST_ID)
        if 300 <= status < 400:  # a redirect (other_responses names no body type)
            responses[str(status)] = {"description": "Redirect to the Location header's URL",
                                      "headers": headers | {"Location": {"schema": {"type": "string"}}}}
            continue
        if status in (429, 503):
            headers.update(_RETRY_AFTER)
        if status == 401:
            headers.update(_WWW_AUTHENTICATE)
        schemas = []
        if status in spec.other_responses:
            schemas.append(schema_of[spec.other_responses[status]])
        if codes:
            schemas.append(_error_schema(codes))
        response: dict[str, Any] = {
            "description": ("Error codes: " + ", ".join(codes)) if codes else "See the schema",
            "headers": headers,
            "content": {"application/json": {
                "schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}},
        }
        if codes:
            response["x-error-codes"] = codes
        responses[str(status)] = response
    op["responses"] = responses
    return op


def build_openapi(specs: list[RouteSpec]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``specs`` (every route the app serves)."""
    types: list[Any] = [ErrorBody]
    for spec in specs:
        for t in (spec.body, spec.response, *spec.alternatives, *spec.other_responses.values()):
            if t is not None and t not in types:
                types.append(t)
    ordered = sorted(types, key=lambda t: getattr(t, "__name__", repr(t)))
    schemas, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    schema_of = dict(zip(ordered, schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = _PARAM_RE.sub(r"{\1}", spec.path)
        paths.setdefault(path, {})[spec.method.lower()] = _operation(spec, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": "dropgate", "version": __version__,
                 "description": "High-traffic drops that cannot oversell, double-redeem or drift. "
                                "Every error is {error, code, details}; the codes a route can "
                                "answer are listed per status (x-error-codes)."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An admin key, or a tenant's service key",
            }},
        },
    }
