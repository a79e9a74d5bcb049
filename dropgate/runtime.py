"""The running stack of one process: connections, scripts, domain engines, persister.

``open_runtime(settings)`` is the one place that builds them, for ``serve``, the
demo, the CLI tools and the tests alike; closing it stops the persister, closes
the pools and stops any embedded server this process started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis

from dropgate.checkout.pages import SandboxPages
from dropgate.checkout.payments.factory import build_provider
from dropgate.checkout.purchases import Purchases
from dropgate.checkout.refunds import Refunds
from dropgate.checkout.webhooks import Webhooks
from dropgate.embedded import EmbeddedStack
from dropgate.engine import redisclient
from dropgate.engine.actors import ActorSystem, TenantActorSystem
from dropgate.engine.actors.batcher import Batcher
from dropgate.engine.apikeys import ApiKeys
from dropgate.engine.codes import Codes
from dropgate.engine.context import EngineContext
from dropgate.engine.holds import HoldSweeper
from dropgate.engine.idempotency import Idempotency, stale_after_ms
from dropgate.engine.invites import Invites
from dropgate.engine.keys import Keys
from dropgate.engine.ledger import Ledger
from dropgate.engine.offers import Offers
from dropgate.engine.promos import Promos
from dropgate.engine.scripts import Scripts
from dropgate.engine.tenants import Tenants
from dropgate.errors import Conflict
from dropgate.persistence.abandoned_uploads import AbandonedUploadSweeper
from dropgate.persistence.database import create_pool
from dropgate.persistence.migrate import migrate_database
from dropgate.persistence.persister import Persister
from dropgate.settings import Settings
from dropgate.webhooks.dispatcher import Dispatcher
from dropgate.webhooks.pools import codes_pool_counter
from dropgate.webhooks.sealing import prepare_stored_secrets, secret_box
from dropgate.webhooks.store import WebhookStore
from dropgate.webhooks.urls import HostResolver, system_resolve

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    pool: asyncpg.Pool
    keys: Keys
    scripts: Scripts
    ctx: EngineContext
    tenants: Tenants
    api_keys: ApiKeys
    invites: Invites
    codes: Codes
    promos: Promos
    ledger: Ledger
    actors: TenantActorSystem  # routes run ledger operations in the tenant's actor
    offers: Offers
    purchases: Purchases
    webhooks: Webhooks
    sandbox: SandboxPages
    refunds: Refunds
    hold_sweeper: HoldSweeper
    idempotency: Idempotency
    actor_systems: list[ActorSystem[Any]] = field(default_factory=list)  # metrics, drained at close
    persister: Persister | None = None
    persister_task: asyncio.Task[None] | None = None
    redis_url: str = ""
    database_url: str = ""
    sweeper_task: asyncio.Task[None] | None = None
    upload_sweeper: AbandonedUploadSweeper | None = None
    upload_sweeper_task: asyncio.Task[None] | None = None
    dispatcher: Dispatcher | None = None
    dispatcher_task: asyncio.Task[None] | None = None
    webhook_resolve: HostResolver = system_resolve  # tests swap in their own DNS

    @property
    def batchers(self) -> list[Batcher[Any, Any, Any]]:
        """The coalescing queues of the four hot operations and of the idempotency records
        around the keyed ones (their counts go to ``/metrics``)."""
        return [self.invites.redemptions, self.promos.redemptions, self.codes.reservations,
                self.purchases.batches, self.idempotency.records]

    @property
    def webhook_store(self) -> WebhookStore:
        return WebhookStore(self.pool, secret_box(self.settings))

    def new_dispatcher(self, *, name: str | None = None) -> Dispatcher:
        return Dispatcher(redis=self.redis, pool=self.pool, keys=self.keys, scripts=self.scripts,
                          settings=self.settings, resolve=self.webhook_resolve, name=name,
                          pool_counter=codes_pool_counter(self.codes))

    def new_upload_sweeper(self) -> AbandonedUploadSweeper:
        return AbandonedUploadSweeper(redis=self.redis, pool=self.pool, keys=self.keys, scripts=self.scripts,
                                      interval_s=self.settings.upload_sweeper_interval_s)

    def new_persister(self, *, name: str | None = None) -> Persister:
        return Persister(redis=self.redis, pool=self.pool, keys=self.keys, scripts=self.scripts,
                         settings=self.settings, name=name)


def connect_redis(url: str, settings: Settings) -> Redis:
    """A blocking pool sized on purpose: callers wait for a connection (up to the
    timeout) instead of failing with MaxConnectionsError under a crowd. No client
    retries: a script retried after a lost reply could apply twice. A ``redis+cluster://``
    URL gives a Redis Cluster client instead (``engine/redisclient.py``)."""
    return redisclient.connect(url, max_connections=settings.redis_max_connections,
                               timeout_s=settings.redis_timeout_s,
                               pool_wait_s=settings.redis_pool_wait_s)


async def check_install(runtime: Runtime) -> None:
    """P is fixed at install: refuse a different one, in Redis and in PostgreSQL."""
    p = runtime.keys.partitions
    await runtime.scripts.call("meta_init", [runtime.keys.meta()], [p])
    async with runtime.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dg_meta (key, value) VALUES ('partitions', $1) ON CONFLICT DO NOTHING",
            str(p),
        )
        stored = await conn.fetchval("SELECT value FROM dg_meta WHERE key = 'partitions'")
    if int(stored) != p:
        raise Conflict(f"PostgreSQL was installed with {stored} partitions, not {p}.",
                       details={"stored_partitions": int(stored), "configured_partitions": p})
    for policy in await redisclient.eviction_policies(runtime.redis):
        _refuse_eviction(policy)


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    """A background loop that ended by an exception says so at once: otherwise its
    exception waits, unseen, for the shutdown that awaits the task (the process looks
    alive while nothing is persisted)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())


async def _wait_or_cancel(task: asyncio.Task[None] | None, timeout_s: float) -> None:
    """A background loop asked to close: its end, or its cancellation past ``timeout_s``.
    One that had failed was logged then (``_log_unexpected_end``): its exception must not
    cut the shutdown short (the dispatcher's once skipped closing the persister, the pool
    and Redis, and the embedded servers)."""
    if task is None:
        return
    try:
        await asyncio.wait_for(task, timeout=timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        task.cancel()
    except Exception:
        pass


def _refuse_eviction(policy: str | None) -> None:
    if policy not in (None, "noeviction"):
        raise Conflict(
            f"Redis maxmemory-policy is {policy}; dropgate needs noeviction "
            "(an evicted key would be lost hot state).",
        )


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    run_persister: bool | None = None,
    run_dispatcher: bool | None = None,
    apply_migrations: bool = True,
    seal_secrets: bool = True,
) -> AsyncIterator[Runtime]:
    """``seal_secrets``: check the secret key against the stored webhook endpoint secrets
    and seal those still in plaintext (the commands that register or deliver webhooks)."""
    embedded = EmbeddedStack(settings.data_path())
    redis: Redis | None = None
    pool: asyncpg.Pool | None = None
    runtime: Runtime | None = None
    provider = build_provider(settings)  # a configuration problem stops start-up, not a purchase
    try:
        endpoints = await asyncio.to_thread(
            embedded.endpoints, settings.redis_url, settings.database_url
        )
        redis = connect_redis(endpoints.redis_url, settings)
        if apply_migrations:  # before the pool: a migration may outlast its timeout
            await migrate_database(settings, endpoints.database_url)
        pool = await create_pool(settings, endpoints.database_url)
        if seal_secrets:
            sealed = await prepare_stored_secrets(pool, secret_box(settings))
            if sealed:
                log.info("sealed %d webhook endpoint secrets stored in plaintext", sealed)
        keys = Keys(settings.key_prefix, settings.partitions)
        scripts = Scripts(redis, wait_replicas=settings.redis_wait,
                          wait_timeout_ms=settings.redis_wait_timeout_ms)
        await scripts.load_all()
        ctx = EngineContext(redis=redis, scripts=scripts, keys=keys, settings=settings)
        tenants = Tenants(ctx)
        offers = Offers(ctx)
        purchases = Purchases(ctx, offers, provider)
        runtime = Runtime(
            settings=settings, redis=redis, pool=pool, keys=keys, scripts=scripts, ctx=ctx,
            tenants=tenants, api_keys=ApiKeys(ctx), invites=Invites(ctx),
            codes=Codes(ctx),
            promos=Promos(ctx),
            ledger=Ledger(ctx), actors=TenantActorSystem(ctx),
            offers=offers, purchases=purchases, webhooks=Webhooks(offers, provider),
            sandbox=SandboxPages(offers, provider, purchases.redirects),
            refunds=Refunds(offers, provider, hold_stale_ms=stale_after_ms(settings.stripe_timeout_s)),
            hold_sweeper=HoldSweeper(ctx, offers), idempotency=Idempotency(ctx),
            redis_url=endpoints.redis_url, database_url=endpoints.database_url,
        )
        runtime.actor_systems.append(runtime.actors)
        await check_install(runtime)
        persisting = run_persister if run_persister is not None else settings.persister_enabled
        if run_dispatcher if run_dispatcher is not None else persisting and settings.dispatcher_enabled:
            runtime.dispatcher = runtime.new_dispatcher()
            runtime.dispatcher_task = asyncio.create_task(runtime.dispatcher.run(),
                                                          name="dropgate-dispatcher")
            runtime.dispatcher_task.add_done_callback(_log_unexpected_end)
        if persisting:
            runtime.persister = runtime.new_persister()
            runtime.persister_task = asyncio.create_task(runtime.persister.run(),
                                                         name="dropgate-persister")
            runtime.persister_task.add_done_callback(_log_unexpected_end)
            runtime.sweeper_task = asyncio.create_task(runtime.hold_sweeper.run(),
                                                       name="dropgate-hold-sweeper")
            runtime.upload_sweeper = runtime.new_upload_sweeper()
            runtime.upload_sweeper_task = asyncio.create_task(runtime.upload_sweeper.run(),
                                                              name="dropgate-upload-sweeper")
        yield runtime
    finally:
        if runtime is not None:
            for system in runtime.actor_systems:  # finish queued operations first
                await system.close()
            await runtime.codes.close()
            await runtime.invites.close()
            await runtime.promos.close()
            await runtime.hold_sweeper.close()
            if runtime.sweeper_task is not None:
                await asyncio.gather(runtime.sweeper_task, return_exceptions=True)
            if runtime.upload_sweeper is not None:
                await runtime.upload_sweeper.close()
            if runtime.upload_sweeper_task is not None:
                await asyncio.gather(runtime.upload_sweeper_task, return_exceptions=True)
            await runtime.purchases.close()
            await runtime.idempotency.close()
            await runtime.api_keys.close()
        await provider.close()
        if runtime is not None and runtime.dispatcher is not None:
            await runtime.dispatcher.close()
            await _wait_or_cancel(runtime.dispatcher_task, 15)
        if runtime is not None and runtime.persister is not None:
            await runtime.persister.close()
            await _wait_or_cancel(runtime.persister_task, 10)
        if pool is not None:
            await pool.close()
        if redis is not None:
            await redis.aclose()
        await asyncio.to_thread(embedded.close)
