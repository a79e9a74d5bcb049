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
tenant's partition (``engine/idempotency.py``): a crowd sending keys coalesces its
records as it coalesces its redemptions. The purchase keeps the same records inside
its own batched script call (``checkout/purchases.py``), so it pays no call for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from dropgate.engine.idempotency import key_digest, request_digest
from dropgate.errors import DropgateError
from dropgate.http.jsonresponse import JsonResponse
from dropgate.models.common import error_body
from dropgate.models.idempotency import REFUSED_BEFORE_CHANGE
from dropgate.runtime import Runtime

REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED = {REPLAYED_HEADER: "true"}  # the header a replayed answer carries


async def replayed(request: web.Request, runtime: Runtime, tenant_id: str, raw_body: bytes,
                   run: Callable[[], Awaitable[tuple[int, bytes]]]) -> JsonResponse:
    """Answer ``run()``'s (status, body) once per key: replayed to every repeat."""
    digest = key_digest(request.headers.get("Idempotency-Key"))
    if not digest:
        status, body = await run()
        return JsonResponse(body, status)
    fingerprint = request_digest(f"{request.method} {request.path}\n".encode() + raw_body)
    idem = runtime.idempotency
    stored = await idem.begin(tenant_id, digest, fingerprint)
    if stored is not None:
        return JsonResponse(stored.body, stored.status, REPLAYED)
    try:
        status, body = await run()
    except DropgateError as exc:
        if exc.status == 429 or exc.code in REFUSED_BEFORE_CHANGE:
            await idem.release(tenant_id, digest, fingerprint)
        elif exc.status < 500:
            await idem.finish(tenant_id, digest, fingerprint, status=exc.status, body=error_body(exc))
        raise  # any other 5xx leaves the record running: its effect is unknown
    await idem.finish(tenant_id, digest, fingerprint, status=status, body=body)
    return JsonResponse(body, status)
