"""``create_app(runtime)``: the aiohttp application over a running stack, and ``serving``,
which runs it on a port (``dropgate serve``, the demo, its workers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from dropgate.gcsettings import tune_gc
from dropgate.http.admission import Admission, Board
from dropgate.http.appkeys import ADMISSION, FRONT, METRICS, OPENAPI, ROUTE_SPECS, RUNTIME
from dropgate.http.connections import GuardedRunner, Limits
from dropgate.http.hotpath import HotFront
from dropgate.http.metrics import Metrics, multiprocess_dir
from dropgate.http.middleware import api_middleware
from dropgate.http.openapi import build_openapi
from dropgate.http.routes import ROUTE_TABLES
from dropgate.http.routing import add_routes
from dropgate.runtime import Runtime
from dropgate.settings import Settings


async def _sync_metrics(app: web.Application) -> AsyncIterator[None]:
    """Every second, this process's own values into the shared metric files, so that
    a scrape answered by another worker is at most a second behind this one."""
    async def loop() -> None:
        while True:
            await asyncio.sleep(1.0)
            app[METRICS].sync()

    task = asyncio.create_task(loop(), name="dropgate-metrics-sync")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(runtime: Runtime, board: Board | None = None) -> web.Application:
    """``board``: shared with the other processes of ``--workers N`` (http/admission.py)."""
    app = web.Application(
        middlewares=[api_middleware],
        client_max_size=runtime.settings.body_limit_bytes,
    )
    app[RUNTIME] = runtime
    settings = runtime.settings  # waiting bounded like the tenant's own queues (whichever is larger)
    app[ADMISSION] = Admission(settings.tenant_admission,
                               max(settings.actor_mailbox_size, settings.tenant_concurrency),
                               contended=settings.tenant_admission_contended, board=board)
    app[METRICS] = Metrics(runtime)
    if multiprocess_dir() is not None:
        app.cleanup_ctx.append(_sync_metrics)
    routes = add_routes(app, ROUTE_TABLES)
    specs = [spec for spec, _ in routes.values()]
    app[ROUTE_SPECS] = specs
    app[OPENAPI] = build_openapi(specs)
    app[FRONT] = HotFront(routes, app._handle).handle
    return app


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> GuardedRunner:
    """The runner every server of ``create_app`` goes through (``serving``, the tests'):
    the hot routes' front (http/hotpath.py) before aiohttp's router, and the connection
    guard (http/connections.py)."""
    return GuardedRunner(app, limits=Limits.from_settings(settings), front=app[FRONT], **kwargs)


@contextlib.asynccontextmanager
async def serving(runtime: Runtime, host: str, port: int, *, reuse_port: bool = False,
                  board: Board | None = None) -> AsyncIterator[str]:
    """Run the API on host:port for the duration of the block; yields the bound URL.
    ``reuse_port``: other processes may listen on the same port (``--workers``), and
    ``board`` is their shared admission board."""
    settings = runtime.settings
    runner = make_runner(create_app(runtime, board), settings, access_log=None,
                         handle_signals=False, keepalive_timeout=settings.http_idle_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None,
                       backlog=settings.http_listen_backlog)
    await site.start()
    tune_gc()
    bound_port = runner.addresses[0][1] if runner.addresses else port
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()
