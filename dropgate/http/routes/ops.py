"""Operations: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from dropgate.engine.redisclient import cluster_state, is_cluster
from dropgate.http.appkeys import METRICS, OPENAPI
from dropgate.http.routing import ApiRoutes, Call
from dropgate.models.ops import Health, Readiness
from dropgate.persistence.persister import GROUP as PERSISTER_GROUP
from dropgate.persistence.progress import stalled
from dropgate.webhooks.health import dispatcher_stuck

routes = ApiRoutes("operations")


@routes.get("/healthz", auth="public", response=Health)
async def healthz(call: Call[None]) -> Health:
    """The process is up."""
    return Health(status="ok")


@routes.get("/readyz", auth="public", response=Readiness, other_responses={503: Readiness})
async def readyz(call: Call[None]) -> web.Response:
    """Redis (on a cluster: every master says cluster_state:ok) and PostgreSQL answer, the
    persistence backlog is under its bound and no partition's events wait without a
    persister consuming them: none holds the lease, or the one holding it has not
    read or acknowledged for longer than the lease (503 if not); also reports a
    webhook dispatcher that is stuck."""
    rt = call.runtime
    redis_ok = pg_ok = False
    lag = dead = 0
    orphaned: list[int] = []
    cluster: dict[str, str] | None = None
    try:
        await rt.redis.ping()
        if is_cluster(rt.redis):
            cluster = await cluster_state(rt.redis)
        redis_ok = cluster is None or all(state == "ok" for state in cluster.values())
        async with rt.redis.pipeline(transaction=False) as pipe:
            for p in range(rt.keys.partitions):
                pipe.xlen(rt.keys.log(p))
                pipe.xlen(rt.keys.dead_letters(p))
                pipe.exists(rt.keys.persister_lease(p))
            counts = await pipe.execute()
        lag = max(counts[0::3], default=0)
        dead = sum(counts[1::3])
        orphaned = [p for p, (backlog, leased) in enumerate(zip(counts[0::3], counts[2::3], strict=True))
                    if backlog and not leased]
        leased = [p for p, (backlog, held) in enumerate(zip(counts[0::3], counts[2::3], strict=True))
                  if backlog and held]
        if leased:
            now_ms = int(time.time() * 1000)  # as webhooks/health.py: stream ids are Redis's clock
            for p in leased:
                if await stalled(rt.redis, rt.keys.log(p), PERSISTER_GROUP,
                                 after_ms=rt.settings.persister_lease_ms, now_ms=now_ms):
                    orphaned.append(p)
            orphaned.sort()
    except Exception:
        pass
    try:
        await rt.pool.fetchval("SELECT 1")
        pg_ok = True
    except Exception:
        pass
    stuck = False
    if redis_ok and pg_ok:
        try:
            stuck = await dispatcher_stuck(rt.redis, rt.pool, rt.keys, rt.settings.dispatcher_stuck_s)
        except Exception:
            pass
    ready = redis_ok and pg_ok and lag < rt.settings.max_backlog and not orphaned
    body = Readiness(status="ready" if ready else "unavailable", redis=redis_ok, postgres=pg_ok,
                     persister_lag=lag, max_backlog=rt.settings.max_backlog, dead_letters=dead,
                     unpersisted_partitions=orphaned, redis_cluster=cluster, dispatcher_stuck=stuck)
    return web.json_response(body=msgspec.json.encode(body), status=200 if ready else 503)


@routes.get("/metrics", auth="public", response=str, response_content_type="text/plain")
async def metrics(call: Call[None]) -> web.Response:
    """Prometheus text exposition."""
    rt = call.runtime
    if rt.persister is not None:
        await rt.persister.lag()
    return web.Response(body=call.request.app[METRICS].render(),
                        content_type="text/plain", charset="utf-8")


@routes.get("/openapi.json", auth="public", response=dict[str, Any])
async def openapi(call: Call[None]) -> web.Response:
    """This document."""
    doc: dict[str, Any] = call.request.app[OPENAPI]
    return web.json_response(body=msgspec.json.encode(doc))
