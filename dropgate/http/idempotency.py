"""Replay by ``Idempotency-Key``: the HTTP capability any POST route can take.

A route listed in ``models/idempotency.REPLAYED_BY_KEY`` (the client's list too)
runs through ``replayed`` when the request carries a key:

1. the key is filed under the tenant (``Idempotency.begin``): a finished request's answer is
   sent again, byte for byte, with ``Idempotent-Replayed: true``; the key with
   another request (method, path or body) is 422 ``IDEMPOTENCY_KEY_REUSED``; one
   still running is 409 ``IDEMPOTENCY_KEY_IN_USE``;
2. the handler runs;
3. its answer is stored (``Idempotency.finish``) before it is sent: a 2xx, and a refusal
   (4xx) too, so a repeat answers alike. A 429 or a 503 refused before any change
   (``REFUSED_BEFORE_CHANGE``: ``PERSISTENCE_LAGGING``, ``TENANT_BUSY``) drops the
   record, so the client's retry with the same key runs again. Any other failure
   (Redis lost, an actor stopped, a bug) leaves the record running: the effect is
   unknown, and a repeat is told 409 until the record counts as stopped
   (``stale_after_ms``), then runs.

Both steps are ``idem_batch`` script calls shared by the concurrent requests of the
tenant's partition (``engine/idempotency.py``). The hot redemptions (invite and promo
redeem, code reservation) keep their records in the script call that decides their
effect instead (``keys_in_handler``: the route passes ``request_record`` to the engine
and answers through ``Call.keyed``, with its declared status), and the purchase inside
its own batched script calls (``checkout/purchases.py``), so neither pays a call for
them. Those scripts file no record for a refusal that changed nothing and that a repeat
may not meet again (429, 503, a 404 for a code that may be created next, and a 400: the
promo route retries a stale currency itself), and since the record is filed with the
effect, none is ever left running there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from dropgate.engine.idempotency import Answered, RecordKey, key_digest, record_key, request_digest
from dropgate.errors import DropgateError
from dropgate.http.jsonresponse import JsonResponse
from dropgate.models.common import error_body
from dropgate.models.idempotency import REFUSED_BEFORE_CHANGE
from dropgate.runtime import Runtime

REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED = {REPLAYED_HEADER: "true"}  # the header a replayed answer carries

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode


def fingerprint(request: web.Request, raw_body: bytes) -> str:
    """The request a key was first sent with: method, path and body (another is 422)."""
    return request_digest(f"{request.method} {request.path}\n".encode() + raw_body)


def request_record(request: web.Request, tenant_id: str, raw_body: bytes) -> RecordKey | None:
    """The record a keyed request's script decides with its effect; None without a key
    (a malformed key is a 400 before anything runs)."""
    digest = key_digest(request.headers.get("Idempotency-Key"))
    return record_key(tenant_id, digest, fingerprint(request, raw_body)) if digest else None


def keyed_response(outcome: Answered[T], render: Callable[[T], Any], status: int) -> JsonResponse:
    """A keyed request's answer, as ``replayed`` would send it: a fresh refusal is
    raised (the error middleware answers it); a repeat's answer, rendered from what the
    script filed exactly as the first was, carries ``Idempotent-Replayed``."""
    if outcome.stored is not None:
        return JsonResponse(outcome.stored.body, outcome.stored.status, REPLAYED)
    if outcome.error is not None:
        if not outcome.replayed:
            raise outcome.error
        return JsonResponse(error_body(outcome.error), outcome.error.status, REPLAYED)
    assert outcome.value is not None
    return JsonResponse(_encode(render(outcome.value)), status, REPLAYED if outcome.replayed else None)


async def replayed(request: web.Request, runtime: Runtime, tenant_id: str, raw_body: bytes,
                   run: Callable[[], Awaitable[tuple[int, bytes]]]) -> JsonResponse:
    """Answer ``run()``'s (status, body) once per key: replayed to every repeat."""
    digest = key_digest(request.headers.get("Idempotency-Key"))
    if not digest:
        status, body = await run()
        return JsonResponse(body, status)
    request_fp = fingerprint(request, raw_body)
    idem = runtime.idempotency
    stored = await idem.begin(tenant_id, digest, request_fp)
    if stored is not None:
        return JsonResponse(stored.body, stored.status, REPLAYED)
    try:
        status, body = await run()
    except DropgateError as exc:
        if exc.status == 429 or exc.code in REFUSED_BEFORE_CHANGE:
            await idem.release(tenant_id, digest, request_fp)
        elif exc.status < 500:
            await idem.finish(tenant_id, digest, request_fp, status=exc.status, body=error_body(exc))
        raise  # any other 5xx leaves the record running: its effect is unknown
    await idem.finish(tenant_id, digest, request_fp, status=status, body=body)
    return JsonResponse(body, status)
