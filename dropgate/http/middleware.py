"""One middleware for every request: request id, the ``Server`` header, the error shape, metrics.

Every failure leaves as ``{"error", "code", "details"}``: dropgate errors with their
own code, aiohttp's 404/405/413 under docs/api.md's codes, a Redis or PostgreSQL outage
as 503 ``UNAVAILABLE`` (fast: the pools have bounded timeouts), and anything
unexpected as 500 ``INTERNAL`` with the traceback in the log, never in the body.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

import asyncpg
import redis.exceptions
from aiohttp import hdrs, web

from dropgate.errors import (
    DropgateError,
    Internal,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    ValidationError,
    error_for,
)
from dropgate.http.appkeys import METRICS
from dropgate.http.connections import SERVER_NAME, ConnectionCut
from dropgate.http.jsonresponse import X_REQUEST_ID, JsonResponse
from dropgate.http.metrics import Metrics
from dropgate.ids import random_hex
from dropgate.models.common import error_body

log = logging.getLogger("dropgate.http")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # maxmemory reached under noeviction, or a replica promoted away: refused writes,
    # nothing applied (Redis refuses a script at its first write, never half-way)
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    ConnectionError,
    TimeoutError,
)

# a peer that went away mid-request: the client, or a store (told apart by _client_gone)
_DISCONNECTED = ConnectionResetError  # aiohttp's ClientConnectionResetError included
_READS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: DropgateError) -> JsonResponse:
    """``exc`` in the error shape (``answer`` gives it its request id)."""
    headers: dict[str, str] = {}
    retry_after = exc.details.get("retry_after_s") if exc.details else None
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="dropgate"'  # RFC 9110 11.6.1: a 401 must say how
    return JsonResponse(error_body(exc), exc.status, headers or None)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _unavailable(request: web.Request, cause: str = "A backing service did not answer.") -> Unavailable:
    """503 ``UNAVAILABLE``, truthful: a read changed nothing; a write's outcome is
    unknown (a script may have run before its answer was lost), and the client is told
    how to find out (docs/api.md, "Outages")."""
    if request.method in _READS:
        return Unavailable(f"{cause} Nothing was changed; retry shortly.", details={"outcome": "none"})
    return Unavailable(
        f"{cause} This write may or may not have been applied: read the resource, or repeat the "
        "request with the same Idempotency-Key, before retrying.", details={"outcome": "unknown"})


def _from_http(exc: web.HTTPException) -> DropgateError:
    if exc.status == 404:
        return NotFound("No such route.")
    if exc.status == 405:
        return MethodNotAllowed("Method not allowed on this route.")
    if exc.status == 413:
        return PayloadTooLarge("The request body is over the limit.")
    if exc.status == 400:
        # our own sentence: aiohttp's text may quote an exception (a failed decoding)
        return ValidationError("Bad request: the body or a header could not be read.")
    err = error_for("HTTP_" + str(exc.status), exc.reason)
    err.status = exc.status  # type: ignore[misc]
    return err


REQUEST_ID = web.RequestKey("dropgate_request_id", str)


def request_id_of(request: web.Request) -> str:
    """The caller's X-Request-Id when it is one we can echo, else a new one."""
    sent_id = request.headers.get(X_REQUEST_ID)
    return sent_id if sent_id and _REQUEST_ID_RE.match(sent_id) else random_hex(16)


def answer_for(request: web.Request, exc: Exception, request_id: str) -> web.StreamResponse:
    """The answer to a request whose handler raised ``exc``: the error shape, a 499 for
    a caller that left, or ``exc`` itself re-raised (a redirect, which aiohttp answers)."""
    if isinstance(exc, DropgateError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:  # a redirect: aiohttp answers it, past this middleware
            exc.headers["Server"] = SERVER_NAME
            raise exc
        response = error_response(_from_http(exc))
        if exc.status == 405 and "Allow" in exc.headers:  # RFC 9110 15.5.6: a 405 must list them
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if isinstance(exc, web.RequestPayloadError):  # a body that cannot be decoded (a bad Content-Encoding)
        return error_response(ValidationError(
            "The request body could not be read (its Content-Encoding or chunking is malformed).",
            details={"field": "body"}))
    if isinstance(exc, _DISCONNECTED):
        if isinstance(exc, ConnectionCut):  # the watchdog's doing (connections.py)
            log.info("%s %s: closed by this server before its request was read: %s (request %s)",
                     request.method, request.path, exc, request_id)
            return web.Response(status=499)
        if not _client_gone(request):
            log.warning("%s %s: backing service unavailable: %r", request.method, request.path, exc)
            return error_response(_unavailable(request))
        # nobody to answer: the metrics count it as nginx's 499
        log.info("%s %s: the client disconnected before its request was read (request %s)",
                 request.method, request.path, request_id)
        return web.Response(status=499)
    if isinstance(exc, _UNAVAILABLE):
        log.warning("%s %s: backing service unavailable: %r", request.method, request.path, exc)
        return error_response(_unavailable(request))
    if isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc):
        # Redis 6 wraps a script's OOM
        log.warning("%s %s: Redis is out of memory: %r", request.method, request.path, exc)
        return error_response(_unavailable(request, "Redis is out of memory."))
    log.exception("%s %s failed (request %s)", request.method, request.path, request_id, exc_info=exc)
    return error_response(Internal(f"Internal error (request {request_id})."))


def answered(request: web.Request, response: web.StreamResponse, request_id: str, metrics: Metrics,
             route: str, started: float) -> web.StreamResponse:
    """``response`` with what every answer carries (its request id, ``Server``), counted
    in the metrics: the end of ``answer``, and of a hot route's handler, which answers
    without it (routing.py: ``make_handler``)."""
    if type(response) is JsonResponse:  # every JSON answer: see jsonresponse.py
        response.identify(request_id)
    elif not response.prepared:  # a streamed answer (a CSV export) has set its own headers
        # ``Server`` here, not in an ``on_response_prepare`` receiver: the signal is a
        # coroutine per answer on every request (BENCHMARKS.md, "Where each microsecond
        # of a request goes"); the parser's refusals set it in connections.py
        headers = response.headers
        headers[X_REQUEST_ID] = request_id
        headers[hdrs.SERVER] = SERVER_NAME
    metrics.observe(route, request.method, response.status, time.perf_counter() - started)
    return response


def begun(request: web.Request) -> tuple[float, str]:
    """When the request's answer began, and its id (kept on the request for a streamed
    answer, which sets its headers itself): the start of ``answer``, and of a hot route's
    handler (routing.py: ``make_handler``)."""
    request_id = request_id_of(request)
    request[REQUEST_ID] = request_id
    return time.perf_counter(), request_id


async def answer(request: web.Request, handler: Handler, metrics: Metrics, route: str) -> web.StreamResponse:
    """Run ``handler`` and give its answer, or its failure in the error shape, with what
    every answer carries."""
    started, request_id = begun(request)
    try:
        response = await handler(request)
    except Exception as exc:
        response = answer_for(request, exc, request_id)
    return answered(request, response, request_id, metrics, route, started)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request the router matched (or refused): see ``answer``; the hot routes'
    common case comes through http/hotpath.py instead, to its handler, which answers alike."""
    resource = request.match_info.route.resource
    return await answer(request, handler, request.app[METRICS],
                        resource.canonical if resource is not None else "unmatched")
