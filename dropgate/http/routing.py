"""Route declarations that carry their contract: body, response, status, auth, errors.

Handlers are thin: ``ApiRoutes`` decodes the JSON body with a module-level msgspec
decoder of the declared struct, resolves the caller and tenant, calls the handler
with a ``Call``, and encodes what it returns. The same declarations generate
``/openapi.json``, so the document cannot miss a route.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import msgspec
from aiohttp import web

from dropgate.engine.actors.batcher import PARKED
from dropgate.engine.apikeys import Principal
from dropgate.engine.idempotency import Answered
from dropgate.errors import DropgateError, PayloadTooLarge, ValidationError
from dropgate.http.admission import Slot
from dropgate.http.appkeys import ADMISSION, METRICS, RUNTIME
from dropgate.http.auth import (
    bearer_token,
    bootstrap_principal,
    look_up,
    own_tenant,
    require_scope,
    resolve_tenant,
)
from dropgate.http.idempotency import keyed_response, replayed
from dropgate.http.jsonresponse import JsonResponse
from dropgate.http.metrics import Metrics
from dropgate.http.middleware import answer_for, answered, begun
from dropgate.http.scopes import route_scope
from dropgate.ids import check_id, check_type
from dropgate.models.idempotency import REPLAYED_BY_KEY
from dropgate.runtime import Runtime

# "any": admin or service key; a service key is scoped to its tenant, an admin to none
Auth = Literal["public", "admin", "tenant", "any"]
B = TypeVar("B")
T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_PATH_RE = re.compile(r"at `\$\.?([^`]*)`")


@dataclass(slots=True)
class Call(Generic[B]):
    """One API call as a handler sees it."""

    request: web.Request
    body: B
    principal: Principal | None
    tenant_id: str  # "" on routes that are not tenant-scoped
    runtime: Runtime
    params: Mapping[str, str]  # the path's parameters (the router's match, or the hot path's)
    raw: bytes = b""  # the body as it arrived (an Idempotency-Key's request fingerprint)
    status: int = 200  # the route's success status, as its declaration gives it

    def keyed(self, outcome: Answered[T], render: Callable[[T], Any]) -> JsonResponse:
        """A ``keys_in_handler`` route's answer to a keyed request (``keyed_response``), with
        the route's declared status: the OpenAPI document and the answer say the same."""
        return keyed_response(outcome, render, self.status)

    def path_id(self, name: str) -> str:
        return check_id(self.params[name], name)

    def query_id(self, name: str, *, required: bool = False, check: Callable[[str, str], str] = check_id,
                 ) -> str | None:
        """A query parameter checked by ``check`` (an id by default); absent: ``None``,
        or VALIDATION_ERROR when ``required``."""
        value = self.request.query.get(name)
        if value is None:
            if required:
                raise ValidationError(f"Query parameter {name} is required.",
                                      details={"field": name})
            return None
        return check(value, name)

    def query_type(self, name: str = "type", *, required: bool = False) -> str | None:
        return self.query_id(name, required=required, check=check_type)


Handler = Callable[[Call[Any]], Awaitable[Any]]


@dataclass
class RouteSpec:
    """One route's contract, read by the router and by the OpenAPI generator."""

    method: str
    path: str
    handler: Handler
    auth: Auth
    body: type[Any] | None
    response: Any
    status: int
    errors: tuple[type[DropgateError], ...]
    summary: str
    tag: str
    request_content: dict[str, Any] | None = None
    response_content_type: str = "application/json"
    headers: tuple[str, ...] = ()
    query: tuple[tuple[str, str, bool], ...] = ()  # (name, description, required)
    # other statuses answered with a body of their own instead of the error shape
    other_responses: dict[int, Any] = field(default_factory=dict)
    # other bodies of the success status (a v1 form kept beside its v1.1 answer)
    alternatives: tuple[Any, ...] = ()
    decoder: msgspec.json.Decoder[Any] | None = field(default=None, repr=False)
    # the answer is kept per Idempotency-Key and replayed (models/idempotency.py's list):
    # by http/idempotency.py, or by the handler itself (``keys_in_handler``: purchases)
    replays_by_key: bool = False
    keys_in_handler: bool = False
    # a route a crowd arrives on: served by http/hotpath.py before the router (a POST whose
    # parameters are whole path segments)
    hot: bool = False
    # what a tenant route needs of its key (models/scopes.py); None on admin and public routes
    scope: str | None = None


def validation_error(exc: msgspec.MsgspecError) -> ValidationError:
    """msgspec's message names the path (``at `$.max_uses```): put it in details.field."""
    text = str(exc)
    match = _PATH_RE.search(text)
    details: dict[str, Any] = {}
    if match and match.group(1):
        details["field"] = match.group(1)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return ValidationError(f"Malformed JSON: {text}", details=details)
    unknown = re.search(r"unknown field `([^`]+)`", text)
    if unknown:
        details["field"] = unknown.group(1)
    return ValidationError(text, details=details)


class ApiRoutes:
    """Like ``web.RouteTableDef``, plus the contract of each route."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        auth: Auth = "tenant",
        body: type[Any] | None = None,
        response: Any = None,
        status: int = 200,
        errors: Sequence[type[DropgateError]] = (),
        summary: str = "",
        request_content: dict[str, Any] | None = None,
        response_content_type: str = "application/json",
        headers: Sequence[str] = (),
        query: Sequence[tuple[str, str, bool]] = (),
        other_responses: dict[int, Any] | None = None,
        alternatives: Sequence[Any] = (),
        keys_in_handler: bool = False,
        hot: bool = False,
        scope: str | None = None,
    ) -> Callable[[Handler], Handler]:
        replays_by_key = (method, path) in REPLAYED_BY_KEY
        if replays_by_key and "Idempotency-Key" not in headers:
            headers = [*headers, "Idempotency-Key"]

        def register(handler: Handler) -> Handler:
            self.specs.append(RouteSpec(
                method=method, path=path, handler=handler, auth=auth, body=body,
                response=response, status=status, errors=tuple(errors),
                summary=summary or (handler.__doc__ or "").strip().split("\n")[0],
                tag=self.tag, request_content=request_content,
                response_content_type=response_content_type, headers=tuple(headers),
                query=tuple(query), other_responses=dict(other_responses or {}),
                alternatives=tuple(alternatives),
                decoder=msgspec.json.Decoder(body) if body is not None else None,
                replays_by_key=replays_by_key, keys_in_handler=keys_in_handler, hot=hot,
                scope=scope or (route_scope(method, path) if auth == "tenant" else None),
            ))
            return handler
        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)


RouteHandler = Callable[..., Awaitable[web.StreamResponse]]


def arrived_body(request: web.Request, declared_length: int | None, limit: int) -> bytes | None:
    """A JSON body that has all arrived (its Content-Length declared and the parser at its
    end: a crowd's small body comes in the packet of its headers), taken from the buffer
    at once; None when it has not, and ``request.read()`` waits for it.

    Why: aiohttp's ``read`` goes through its loop of ``readany`` coroutines (one for the
    data, one to see the end) and copies the body twice: 4 µs of a 64 µs redemption, the
    largest single piece of the handler (BENCHMARKS.md, "The hot routes' own path").
    The route's handler is a JSON body's only reader, so nothing reads it after this.
    Over ``limit`` (a compressed body grows when decoded), aiohttp's own 413, as ``read``."""
    content = request.content
    if declared_length is None or not content.is_eof() or content.exception() is not None:
        return None
    raw = content.read_nowait()
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(limit)
    return raw


def make_handler(spec: RouteSpec, app: web.Application) -> RouteHandler:
    """The handler of one route: auth, decode, call, encode.

    aiohttp's router calls it with the request alone (``params`` are then the router's
    match, and the middleware answers); the hot path (http/hotpath.py) calls it with the
    path's parameters it parsed itself, before any router or middleware, and it answers
    as the middleware would. ``app`` is the application's own, not ``request.app``, which
    only a router's match provides."""

    declared = frozenset(name for name, _, _ in spec.query)
    by_key = spec.replays_by_key and not spec.keys_in_handler
    streams_body = bool(spec.request_content) and any(
        "csv" in kind for kind in spec.request_content or {})  # bounded by the CSV limit itself

    bound: list[tuple[Runtime, Metrics]] = []  # app[RUNTIME], app[METRICS], looked up once: frozen by then

    async def handle(request: web.Request, params: Mapping[str, str] | None = None) -> web.StreamResponse:
        if not bound:
            bound.append((app[RUNTIME], app[METRICS]))
        runtime, metrics = bound[0]
        # ``params`` given: the hot path (http/hotpath.py), which no middleware wraps, and
        # this coroutine answers as the middleware's ``answer`` would, itself (a crowd's
        # request suspends and resumes through every coroutine it awaits in: one less)
        hot = params is not None
        started, request_id = begun(request) if hot else (0.0, "")
        try:
            declared_length = request.content_length
            if declared_length is not None:  # 413 now, not after waiting for a body never sent
                limit = (runtime.settings.csv_body_limit_bytes if streams_body
                         else runtime.settings.body_limit_bytes)
                if declared_length > limit:
                    raise PayloadTooLarge(f"The request body is over {limit} bytes.",
                                          details={"limit_bytes": limit})
            principal: Principal | None = None
            tenant_id = ""
            if spec.auth != "public":
                token = bearer_token(request)
                principal = runtime.api_keys.known(token) or bootstrap_principal(token, runtime)
                if principal is None:
                    principal = await look_up(token, runtime)
                if spec.auth == "admin":
                    if principal.role != "admin":
                        from dropgate.errors import Forbidden

                        raise Forbidden("This route needs an admin key.")
                elif principal.role != "admin":
                    require_scope(principal, spec.scope)
                    tenant_id = own_tenant(request, principal)
                elif spec.auth == "any":
                    tenant_id = ""
                else:
                    require_scope(principal, spec.scope)
                    tenant_id = await resolve_tenant(request, runtime, principal)
                # like unknown body fields: a misspelt ?statuss= must not silently mean "all"
                # (parsed only when there is one: building request.query was a visible
                # share of a purchase's CPU)
                if request.query_string:
                    unknown = next((name for name in request.query if name not in declared), None)
                    if unknown is not None:
                        raise ValidationError(f"Unknown query parameter {unknown!r}.",
                                              details={"field": unknown})
            # Inside the tenant's admission slot (http/admission.py): decode, call, encode, in
            # this coroutine (one layer less per request than a coroutine of its own: every
            # await a request parks on resumes through each layer; BENCHMARKS.md, "Where each
            # microsecond of a request goes")
            slot: Slot | None = None
            parked: contextvars.Token[Callable[[], None] | None] | None = None
            if tenant_id:
                admission = app[ADMISSION]
                if not admission.try_enter(tenant_id):
                    await admission.enter(tenant_id)
                slot = Slot(admission, tenant_id)
                parked = PARKED.set(slot.park)  # given back early if it parks on a batch (tenant alone)
            try:
                body: Any = None
                raw = b""
                if spec.decoder is not None:
                    arrived = arrived_body(request, declared_length, runtime.settings.body_limit_bytes)
                    raw = await request.read() if arrived is None else arrived
                    if not raw and spec.method == "PATCH":
                        # a PATCH changes what its body names: no body is a mistake, not "change nothing"
                        raise ValidationError("Malformed JSON: the body is empty; a PATCH takes a JSON object "
                                              "naming the fields to change ({} changes nothing).")
                    try:
                        body = spec.decoder.decode(raw or b"{}")
                    except msgspec.MsgspecError as exc:
                        raise validation_error(exc) from None
                call = Call(request, body, principal, tenant_id, runtime,
                            request.match_info if params is None else params, raw, spec.status)
                response: web.StreamResponse
                if by_key and "Idempotency-Key" in request.headers:
                    async def run() -> tuple[int, bytes]:
                        return spec.status, _encoder.encode(await spec.handler(call))

                    response = await replayed(request, runtime, tenant_id, raw, run)
                elif by_key:  # what ``replayed`` does without a key, one coroutine less
                    response = JsonResponse(_encoder.encode(await spec.handler(call)), spec.status)
                else:
                    result = await spec.handler(call)
                    if isinstance(result, web.StreamResponse):
                        response = result
                    elif result is None:
                        response = web.Response(status=spec.status)
                    else:
                        response = JsonResponse(_encoder.encode(result), spec.status)
            finally:
                if slot is not None:
                    if parked is not None:
                        PARKED.reset(parked)
                    slot.release()
        except Exception as exc:
            if not hot:
                raise  # to the middleware's ``answer``
            response = answer_for(request, exc, request_id)
        return answered(request, response, request_id, metrics, spec.path, started) if hot else response

    handle.__name__ = spec.handler.__name__
    return handle


def add_routes(app: web.Application, tables: Sequence[ApiRoutes],
               ) -> dict[tuple[str, str], tuple[RouteSpec, RouteHandler]]:
    """Every route of ``tables`` on ``app``'s router; returns each (method, path)'s spec
    and handler (the hot path serves some of them without the router)."""
    routes: dict[tuple[str, str], tuple[RouteSpec, RouteHandler]] = {}
    for table in tables:
        for spec in table.specs:
            handler = make_handler(spec, app)
            app.router.add_route(spec.method, spec.path, handler)
            routes[spec.method, spec.path] = (spec, handler)
    return routes
