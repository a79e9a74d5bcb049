"""``create_app(runtime)``: the aiohttp application over a running stack."""

from __future__ import annotations

from aiohttp import web

from dropgate.http.appkeys import METRICS, OPENAPI, ROUTE_SPECS, RUNTIME
from dropgate.http.metrics import Metrics
from dropgate.http.middleware import api_middleware
from dropgate.http.openapi import build_openapi
from dropgate.http.routes import ROUTE_TABLES
from dropgate.http.routing import add_routes
from dropgate.runtime import Runtime


def create_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[api_middleware],
        client_max_size=runtime.settings.body_limit_bytes,
    )
    app[RUNTIME] = runtime
    app[METRICS] = Metrics(runtime)
    specs = add_routes(app, ROUTE_TABLES)
    app[ROUTE_SPECS] = specs
    app[OPENAPI] = build_openapi(specs)
    return app
