"""dropgate's hot routes with their domain work and nothing else: ``python -m benchmarks.bare --port N``.

Why (issue #19): ``benchmarks.floor`` is the design's floor (a key, a body, one script
call per batch, an answer), not a dropgate request: a purchase also digests its
Idempotency-Key, takes a purchase id, opens a checkout session, builds its redirect URLs
and its 201 body, and stores that answer by key; a redemption replays by key. This server
is ``dropgate serve`` (the same settings from the environment, the same runtime, app and
runner) with one change: the four hot routes' handlers are bare. Each takes the key from
the cache (``ApiKeys.known``; the first request of a key looks it up), the tenant from
the key, the body from the buffer, and calls the route's own function and engine with the
route's own idempotency path (``http/idempotency.replayed`` where the route replays by
key), answering with ``JsonResponse`` (a refusal of the engine in the error shape: a
``try`` costs nothing until something raises). What it leaves out is dropgate's request
glue: the request id and ``Server`` header, the error shape of anything else, metrics,
per-tenant admission, the scope and ``X-Tenant-Id`` checks, the body-limit check and the
query check. Every other route is the real one, so ``benchmarks.cpu_profile --bare``
sets it up through the API as it does ``dropgate serve``.

So its CPU per request, beside dropgate's and the no-op's in the same rounds, splits
dropgate's distance from the no-op in two: the glue (dropgate against bare) and what no
change to the request path removes on this stack (bare against the no-op). Not a server
to run: it answers without the contract's guarantees.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from benchmarks.common import serve_until_sigterm
from dropgate.errors import DropgateError
from dropgate.http.auth import bearer_token, look_up
from dropgate.http.hotpath import HotFront
from dropgate.http.idempotency import replayed
from dropgate.http.jsonresponse import JsonResponse
from dropgate.http.middleware import error_response
from dropgate.http.routing import Call, RouteHandler, RouteSpec, arrived_body
from dropgate.runtime import Runtime

_encoder = msgspec.json.Encoder()


def bare_handler(spec: RouteSpec, runtime: Runtime) -> RouteHandler:
    """A hot route's handler with its domain work only (see the module's docstring)."""
    assert spec.decoder is not None
    decode = spec.decoder.decode
    route = spec.handler
    status = spec.status
    by_key = spec.replays_by_key and not spec.keys_in_handler
    limit = runtime.settings.body_limit_bytes
    known = runtime.api_keys.known

    async def handle(request: web.Request, params: Mapping[str, str]) -> web.StreamResponse:
        try:  # free until something raises: the engine's refusals in the error shape, as dropgate's
            token = bearer_token(request)
            principal = known(token) or await look_up(token, runtime)
            tenant_id = principal.tenant_id or ""
            arrived = arrived_body(request, request.content_length, limit)
            raw = await request.read() if arrived is None else arrived
            call = Call(request, decode(raw), principal, tenant_id, runtime, params, raw)
            if by_key and "Idempotency-Key" in request.headers:
                async def run() -> tuple[int, bytes]:
                    return status, _encoder.encode(await route(call))

                return await replayed(request, runtime, tenant_id, raw, run)
            result = await route(call)
            if isinstance(result, web.StreamResponse):
                return result
            return JsonResponse(_encoder.encode(result), status)
        except DropgateError as exc:
            return error_response(exc)

    return handle


def bare_app(runtime: Runtime) -> web.Application:
    """``create_app(runtime)`` with the hot routes' handlers bare (``make_runner`` serves its front)."""
    from dropgate.http.app import create_app
    from dropgate.http.appkeys import FRONT, ROUTE_SPECS

    app = create_app(runtime)
    routes: dict[tuple[str, str], tuple[RouteSpec, RouteHandler]] = {
        (spec.method, spec.path): (spec, bare_handler(spec, runtime)) for spec in app[ROUTE_SPECS] if spec.hot}
    app[FRONT] = HotFront(routes, app._handle).handle
    return app


async def _serve(port: int) -> None:
    from dropgate.http.app import make_runner
    from dropgate.runtime import open_runtime
    from dropgate.settings import from_env

    settings = from_env(os.environ)
    async with open_runtime(settings, run_persister=False, run_dispatcher=False, seal_secrets=True) as runtime:
        runner = make_runner(bare_app(runtime), settings, access_log=None, handle_signals=False,
                             keepalive_timeout=settings.http_idle_timeout_s)
        await serve_until_sigterm(runner, port)


def main(argv: list[str] | None = None) -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args: Any = parser.parse_args(argv)
    uvloop.run(_serve(args.port))


if __name__ == "__main__":
    main()
