"""Every ``web.AppKey`` of the application, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from dropgate.http.admission import Admission
    from dropgate.http.metrics import Metrics
    from dropgate.http.routing import RouteSpec
    from dropgate.runtime import Runtime

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
ROUTE_SPECS: web.AppKey[list[RouteSpec]] = web.AppKey("route_specs")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
ADMISSION: web.AppKey[Admission] = web.AppKey("admission")
# the server's request handler: the hot routes' front, then the router (http/hotpath.py)
FRONT: web.AppKey[Callable[[web.Request], Awaitable[web.StreamResponse]]] = web.AppKey("front")
