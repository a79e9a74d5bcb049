"""The webhook dispatcher: reads the partition logs with its own consumer group and
delivers what tenants subscribed to.

Two loops, one job each:

- **The log loop.** Per partition it holds a lease (``PartitionLeases``, the
  persister's balancing on ``Keys.dispatcher_lease``: each of N live dispatchers
  takes ceil(P/N) partitions, and a dead one's pass to the others when its leases
  lapse), reads with the group
  ``dispatcher``, maps each entry to public events (``mapping``), matches them with
  the tenants' endpoints and, while it is near the head of the log, tries each
  delivery at once (deliveries of one entity to one endpoint one after another, in
  log order). It then writes one row per delivery to ``dg_webhook_deliveries`` (its
  outcome, or ``pending`` with the time of the next attempt) in one transaction, and
  only then XACKs and trims the log (``trim_log``: never past the persister). An
  endpoint that already has pending deliveries is not tried inline: its new
  deliveries queue behind the old ones. Past ``webhook_spill_after`` entries behind,
  nothing is tried inline: the batch is *spilled* (written as pending rows) so the
  log can be trimmed and Redis does not grow while a receiver hangs.
- **The queue loop.** Takes due pending rows from PostgreSQL (``FOR UPDATE SKIP
  LOCKED`` plus a ``locked_until`` lease, so several dispatchers share the queue;
  only the oldest pending delivery of an (endpoint, entity) is due, which keeps
  per-entity order), delivers them and records the outcome: success; a retry after
  ``retry_delay_s`` (exponential, jittered); ``failed`` once the delivery is older
  than ``webhook_retry_for_s``. An endpoint that has failed every attempt for
  ``webhook_disable_after_s`` is disabled and its pending deliveries failed.

At least once: a crash between a POST and its row, or between the rows and the
XACK, means the entry is read again (the new lease owner claims it) and delivered
again with the same event id; rows are unique per (endpoint, event id), so nothing
is recorded twice. Nothing is lost: an entry leaves the log only after its rows are
committed.

Nothing is left pending in the group either (which would stop trimming for good and
fill the log to ``max_backlog``): a batch read is held (``_claimed``) until it is
acknowledged, whatever fails, and an entry delivered by a read whose reply was lost
with the connection is claimed back once it has been idle a lease
(``persistence/claims.py``, as the persister does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.exceptions
from redis.asyncio import Redis

from dropgate.engine.events import Event, Malformed, parse_stream_id
from dropgate.engine.keys import Keys
from dropgate.engine.periodic import pause
from dropgate.engine.redisclient import is_cluster
from dropgate.engine.scripts import Scripts
from dropgate.ids import new_id, text
from dropgate.persistence import claims
from dropgate.persistence.leases import PartitionLeases
from dropgate.persistence.trim import trim_log
from dropgate.settings import Settings
from dropgate.webhooks.delivery import Deliverer, Outcome, retry_delay_s
from dropgate.webhooks.mapping import (
    PoolCheck,
    PoolCounter,
    PoolWatch,
    PublicEvent,
    pool_checks,
    public_event,
    public_type,
    tenant_of,
)
from dropgate.webhooks.sealing import SecretKeyMismatch, secret_box
from dropgate.webhooks.store import Endpoint, EndpointCache, WebhookStore
from dropgate.webhooks.urls import HostResolver, system_resolve

log = logging.getLogger(__name__)

GROUP = "dispatcher"
_LOCK_MARGIN_S = 30.0
_LINGER_S = 0.05  # pause after a pass that found less than a full batch
_TRANSIENT = (
    OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)


@dataclass
class DispatcherStats:
    """Counters read by ``/metrics`` (per endpoint where it says so)."""

    entries_read: int = 0
    spilled: int = 0
    successes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed_deliveries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lag_s: dict[str, float] = field(default_factory=dict)  # event -> its successful delivery, latest
    disabled_endpoints: int = 0
    transient_errors: int = 0
    reclaimed: int = 0  # entries a lost read reply left pending, claimed back after a lease
    skipped_passes: int = 0  # passes that moved past the logs unread: no endpoint at all
    last_error: str | None = None


@dataclass
class _Owed:
    """One public event owed to one endpoint, and what the inline attempt gave."""

    event: PublicEvent
    endpoint: Endpoint
    body: bytes
    outcome: Outcome | None = None
    spilled: bool = False


class Dispatcher:
    """``run()`` forever, or ``run_once()`` / ``drain()`` in tests; ``close()`` stops it."""

    def __init__(
        self,
        *,
        redis: Redis,
        pool: asyncpg.Pool,
        keys: Keys,
        scripts: Scripts,
        settings: Settings,
        resolve: HostResolver = system_resolve,
        pool_counter: PoolCounter | None = None,
        name: str | None = None,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._keys = keys
        self._settings = settings
        self.name = name or claims.consumer_name()
        self.store = WebhookStore(pool, secret_box(settings))
        self._endpoints = EndpointCache(self.store, ttl_s=settings.webhook_endpoint_cache_s)
        self._deliverer = Deliverer(settings, resolve)
        self._pools = PoolWatch(pool_counter) if pool_counter is not None else None
        self._leases = PartitionLeases(scripts=scripts, partitions=keys.partitions,
                                       lease_key=keys.dispatcher_lease,
                                       members_key=keys.dispatcher_members(), owner=self.name,
                                       lease_ms=settings.dispatcher_lease_ms, role="dispatcher")
        self._claimed: dict[int, list[Event[Any]]] = {}
        self._endpoint_seen_at = -1e9  # monotonic s: some tenant had an endpoint (no skipping)
        self._forgotten = claims.ForgottenReads(group=GROUP, consumer=self.name,
                                                lease_ms=settings.dispatcher_lease_ms,
                                                count=settings.dispatcher_batch_size)
        self._groups_ready: set[int] = set()
        self._stream_partition = {keys.log(p): p for p in range(keys.partitions)}
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._cluster = is_cluster(redis)
        self.stats = DispatcherStats()

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Both loops until ``close()``; transient failures back off and retry."""
        try:
            await asyncio.gather(self._loop(self._log_pass), self._loop(self._queue_pass))
        finally:
            await self._shut()

    async def _loop(self, step: Any) -> None:
        delay = 0.05
        while not self._closing.is_set():
            try:
                worked = await step()
                delay = 0.05
                if not worked:
                    await self._sleep(self._settings.dispatcher_block_ms / 1000)
                elif worked < self._settings.dispatcher_batch_size:
                    # caught up: let the log fill a little before the next pass. Each pass
                    # pays the same round trips (read, endpoints, ack, trim) however few
                    # entries it carries; back to back under a crowd they cost a tenth of
                    # the API process's CPU (BENCHMARKS.md)
                    await self._sleep(min(_LINGER_S, self._settings.dispatcher_block_ms / 1000))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.transient_errors += 1
                self.stats.last_error = repr(exc)
                if isinstance(exc, _TRANSIENT):
                    log.warning("dispatcher %s: %r; retrying in %.2fs", self.name, exc, delay)
                else:
                    log.exception("dispatcher %s: unexpected error", self.name)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)

    async def run_once(self) -> int:
        """One pass of each loop, waiting for the deliveries it started."""
        worked = await self._log_pass()
        worked += await self._queue_pass()
        await self._settle()
        return worked

    async def drain(self, *, timeout_s: float = 60.0) -> None:
        """Until every log is read and nothing is pending (tests; a failing receiver
        never lets this return: wait on the receiver instead)."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.run_once()
            if await self.behind() == 0 and not await self.pending_count():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"dispatcher did not drain in {timeout_s}s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._closing.set()

    async def aclose(self) -> None:
        """Stop and release (for a dispatcher driven by ``run_once``)."""
        self._closing.set()
        await self._shut()

    async def _shut(self) -> None:
        """The deliveries under way finish, the leases go (best effort: Redis may be
        away), the HTTP session closes."""
        await self._settle()
        try:
            await self._leases.release()
        except _TRANSIENT:
            pass
        await self._deliverer.close()

    async def _sleep(self, seconds: float) -> None:
        await pause(self._closing, seconds)

    async def _settle(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # -- reading the logs -------------------------------------------------------------------
    async def behind(self) -> int:
        """Log entries the group has not finished with (read-but-unacked included)."""
        total = 0
        for p in range(self._keys.partitions):
            total += await self._behind(self._keys.log(p))
        return total

    async def _behind(self, stream: str, *, cap: int = 100_000) -> int:
        """Entries of ``stream`` the group has not finished: its pending ones plus those
        after its last-delivered id, counted up to ``cap`` (XINFO's ``lag`` is unknown
        once the log was trimmed, and the log's length counts the persister's too)."""
        try:
            groups = await self._redis.xinfo_groups(stream)
        except redis.exceptions.ResponseError:  # no stream yet
            return 0
        for info in groups:
            if text(info["name"]) == GROUP:
                after = "(" + text(info["last-delivered-id"])
                unread: Any = await self._redis.xrange(stream, min=after, max="+", count=cap)
                return len(unread) + int(info["pending"])
        return min(int(await self._redis.xlen(stream)), cap)

    async def pending_count(self) -> int:
        return int(await self._pool.fetchval(
            "SELECT count(*) FROM dg_webhook_deliveries WHERE status = 'pending'"))

    async def _log_pass(self) -> int:
        try:
            return await self._read_logs()
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("dispatcher %s: consumer group gone (%s); taking the partitions afresh",
                        self.name, exc)
            self._groups_ready.clear()
            self._claimed.clear()
            for p in list(self._leases.owned):
                self._leases.drop(p)
            self._leases.expire_now()
            return 0

    async def _read_logs(self) -> int:
        _gained, lost = await self._leases.refresh(take=self._take_partition)
        for p in lost:  # handed over or lost: its next owner claims what was unfinished
            self._claimed.pop(p, None)
        forgotten = await self._forgotten.claim(self._redis, self._keys, owned=self._leases.owned,
                                                held=self._claimed)
        for p, events in forgotten.items():  # a lost read's reply: done as if just read
            self.stats.reclaimed += len(events)
            self._claimed[p] = events
        worked = 0
        for p in sorted(self._leases.owned):
            claimed = self._claimed.pop(p, None)
            if claimed:
                worked += await self._dispatch(p, claimed)
        owned = sorted(self._leases.owned)
        if not owned:
            return worked
        skipped = await self._skip_while_no_endpoint(owned)
        if skipped is not None:
            return worked + skipped
        # a cluster's failed read is raised after what the others read is dispatched
        streams, failure = await claims.read_new(self._redis, self._keys, owned, group=GROUP, consumer=self.name,
                                                 count=self._settings.dispatcher_batch_size, cluster=self._cluster)
        batches = claims.by_partition(streams, self._stream_partition)
        for i, (p, events) in enumerate(batches):
            try:
                worked += await self._dispatch(p, events)
            except BaseException:
                for q, rest in batches[i + 1:]:  # read too: they would not be offered again
                    self._claimed[q] = self._claimed.get(q, []) + rest
                raise
        if failure is not None:
            raise failure
        return worked

    async def _skip_while_no_endpoint(self, owned: list[int]) -> int | None:
        """While no tenant has an enabled endpoint, nothing in the logs can be owed to
        anyone: the group's read position moves to each log's newest entry (XGROUP
        SETID) instead of reading, decoding and acknowledging a crowd's entries batch by
        batch, which cost a purchase about 20 µs of the serving process's CPU and 5 µs of
        Redis (BENCHMARKS.md, "The dispatcher's share").

        No clocks are compared: the heads are read before PostgreSQL is asked, so an
        endpoint registered before any of those entries was appended is committed before
        the question, and seen. Once an endpoint is seen, the logs are read as before for
        ``webhook_endpoint_cache_s`` without asking again. A pool that went low while no
        endpoint existed fires to one registered later, at its next check (its state row
        was never written). Returns the logs moved past (0: nothing new), or None when
        they must be read."""
        if time.monotonic() - self._endpoint_seen_at < self._settings.webhook_endpoint_cache_s:
            return None
        heads = await self._unread_heads(owned)
        if not heads:
            return 0
        if await self.store.any_enabled():
            self._endpoint_seen_at = time.monotonic()
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            for p, head in heads.items():
                pipe.xgroup_setid(self._keys.log(p), GROUP, head)
            await pipe.execute()
        self.stats.skipped_passes += 1
        for p in heads:
            await trim_log(self._redis, self._keys.log(p))
        return len(heads)

    async def _unread_heads(self, owned: list[int]) -> dict[int, str]:
        """Each owned log's newest entry id, where the group has not read that far."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for p in owned:
                pipe.xinfo_stream(self._keys.log(p))
                pipe.xinfo_groups(self._keys.log(p))
            replies = await pipe.execute(raise_on_error=False)
        heads: dict[int, str] = {}
        for i, p in enumerate(owned):
            info, groups = replies[2 * i], replies[2 * i + 1]
            if isinstance(info, Exception) or isinstance(groups, Exception):
                if "no such key" in str(info).lower():
                    continue  # no log yet: nothing to read
                raise info if isinstance(info, Exception) else groups
            last = text(info["last-generated-id"])
            delivered = next((text(g["last-delivered-id"]) for g in groups if text(g["name"]) == GROUP), None)
            if delivered is None:
                continue  # no group yet (taken at the lease): read as before
            if parse_stream_id(delivered) < parse_stream_id(last):
                heads[p] = last
        return heads

    async def _take_partition(self, p: int) -> None:
        """Newly leased: the group exists, and what a dead owner read but did not finish
        is claimed and done again."""
        if p not in self._groups_ready:
            await claims.create_group(self._redis, self._keys.log(p), GROUP)
            self._groups_ready.add(p)
        claimed = await claims.claim_pending(self._redis, self._keys, p, group=GROUP, consumer=self.name,
                                             min_idle_ms=0, count=self._settings.dispatcher_batch_size)
        if claimed:
            log.info("dispatcher %s claimed %d unfinished entries of partition %d",
                     self.name, len(claimed), p)
            self._claimed[p] = claimed

    # -- one batch of entries -------------------------------------------------------------
    async def _dispatch(self, p: int, events: list[Event[Any]]) -> int:
        """One batch, or (PostgreSQL or Redis failing) the same batch kept to go first
        next time: read entries are not offered again by ``XREADGROUP >``."""
        try:
            return await self._dispatch_batch(p, events)
        except BaseException:
            if p in self._leases.owned:
                self._claimed[p] = events + self._claimed.get(p, [])
            raise

    async def _dispatch_batch(self, p: int, events: list[Event[Any]]) -> int:
        self.stats.entries_read += len(events)
        # Only entries of a type some endpoint of their tenant wants become public events:
        # building one (times and amounts formatted) for every entry of a crowd whose
        # tenant has no endpoint was half of the dispatcher's CPU (BENCHMARKS.md, "Where
        # the offers purchase lost its time"). The endpoints are asked for exactly as
        # before: the tenants of the entries that have a public type, fresh for the newest.
        typed: list[tuple[Event[Any], str]] = []
        checks: list[PoolCheck] = []
        for event in events:
            if isinstance(event.data, Malformed):
                continue
            kind = public_type(event)
            if kind is not None:
                typed.append((event, kind))
            checks.extend(pool_checks(event))
        endpoints: dict[str, list[Endpoint]] = {}
        if typed:
            endpoints = await self._endpoints.for_tenants(
                {tenant_of(e) for e, _ in typed}, newest_event_ms=max(e.position[0] for e, _ in typed))
        published = [public_event(e, kind) for e, kind in typed
                     if any(ep.wants(kind) for ep in endpoints.get(tenant_of(e), ()))]
        stream = self._keys.log(p)
        if published or (checks and self._pools is not None):
            await self._deliver_batch(stream, published, checks, endpoints)
        await self._redis.xack(stream, GROUP, *[e.id for e in events])
        await trim_log(self._redis, stream)
        return len(events)

    async def _deliver_batch(self, stream: str, published: list[PublicEvent], checks: list[PoolCheck],
                             endpoints: dict[str, list[Endpoint]]) -> None:
        async with self._pool.acquire() as conn:
            if checks and self._pools is not None:
                fired = await self._pools.resolve(conn, checks)
                if fired:  # a pool gone low: its tenant's endpoints, fresh for this event
                    endpoints = endpoints | await self._endpoints.for_tenants(
                        {e.tenant_id for e in fired}, newest_event_ms=max(e.created_ms for e in fired))
                    published.extend(fired)
            owed = self._owed(published, endpoints)
            if owed:
                owed = await self._not_recorded(conn, owed)
            if owed:
                # how far behind matters only to a batch that owes deliveries
                spill_after = self._settings.webhook_spill_after
                spill = await self._behind(stream, cap=spill_after + 1) > spill_after
                await self._try_inline(conn, owed, spill=spill)
                await self._record(conn, owed)

    @staticmethod
    def _owed(published: list[PublicEvent], endpoints: dict[str, list[Endpoint]]) -> list[_Owed]:
        return [_Owed(event=e, endpoint=ep, body=e.body())
                for e in published for ep in endpoints.get(e.tenant_id, []) if ep.wants(e.type)]

    @staticmethod
    async def _not_recorded(conn: asyncpg.Connection, owed: list[_Owed]) -> list[_Owed]:
        """Those without a row yet (an entry read again after a crash has some)."""
        known = {(r["endpoint_id"], r["event_id"]) for r in await conn.fetch(
            "SELECT endpoint_id, event_id FROM dg_webhook_deliveries WHERE event_id = ANY($1)",
            list({o.event.id for o in owed}))}
        return [o for o in owed if (o.endpoint.endpoint_id, o.event.id) not in known]

    async def _try_inline(self, conn: asyncpg.Connection, owed: list[_Owed], *, spill: bool) -> None:
        """Near the head of the log, try each delivery now: per (endpoint, entity) in order,
        stopping a chain at its first failure (the rest queue behind it)."""
        if spill:
            for o in owed:
                o.spilled = True
            self.stats.spilled += len(owed)
            return
        queued = {r["endpoint_id"] for r in await conn.fetch(
            """SELECT DISTINCT endpoint_id FROM dg_webhook_deliveries
                WHERE status = 'pending' AND endpoint_id = ANY($1)""",
            list({o.endpoint.endpoint_id for o in owed}))}
        chains: dict[tuple[str, str], list[_Owed]] = defaultdict(list)
        for o in owed:
            if o.endpoint.endpoint_id not in queued:
                chains[(o.endpoint.endpoint_id, o.event.entity)].append(o)

        async def run(chain: list[_Owed]) -> None:
            for o in chain:
                o.outcome = await self._deliverer.deliver(
                    endpoint_id=o.endpoint.endpoint_id, url=o.endpoint.url,
                    secret=o.endpoint.secret, body=o.body)
                self._count(o.endpoint.endpoint_id, o.outcome, attempts=1,
                            created_ms=o.event.created_ms)
                if not o.outcome.ok:
                    return

        await asyncio.gather(*(run(chain) for chain in chains.values()))

    async def _record(self, conn: asyncpg.Connection, owed: list[_Owed]) -> None:
        rows: list[tuple[Any, ...]] = []
        failing: set[str] = set()
        healthy: set[str] = set()
        for o in owed:
            out = o.outcome
            ep = o.endpoint.endpoint_id
            if out is None:
                rows.append((new_id("whd_", 12), ep, o.event.tenant_id, o.event.id, o.event.type,
                             o.event.entity, o.body.decode(), "pending", 0, o.spilled, 0.0,
                             None, None, False))
            elif out.ok:
                healthy.add(ep)
                rows.append((new_id("whd_", 12), ep, o.event.tenant_id, o.event.id, o.event.type,
                             o.event.entity, o.body.decode(), "succeeded", 1, False, 0.0,
                             out.status, None, True))
            else:
                failing.add(ep)
                rows.append((new_id("whd_", 12), ep, o.event.tenant_id, o.event.id, o.event.type,
                             o.event.entity, o.body.decode(), "pending", 1, False,
                             retry_delay_s(1, self._settings), out.status, out.error, True))
        async with conn.transaction():
            await conn.executemany(
                """INSERT INTO dg_webhook_deliveries
                     (delivery_id, endpoint_id, tenant_id, event_id, event_type, entity, body, status,
                      attempts, spilled, next_attempt_at, response_status, last_error,
                      last_attempt_at, delivered_at)
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                          now() + make_interval(secs => $11), $12, $13,
                          CASE WHEN $14 THEN now() END, CASE WHEN $8 = 'succeeded' THEN now() END
                    WHERE EXISTS (SELECT 1 FROM dg_webhook_endpoints WHERE endpoint_id = $2)
                   ON CONFLICT (endpoint_id, event_id) DO NOTHING""", rows)
            await self._endpoint_health(conn, healthy=healthy - failing, failing=failing)

    # -- the queue ----------------------------------------------------------------------------
    async def _queue_pass(self) -> int:
        room = self._settings.dispatcher_batch_size - len(self._inflight)
        if room <= 0 or self._closing.is_set():
            return 0
        rows = await self._claim(room)
        for row in rows:
            task = asyncio.create_task(self._chain(row))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(rows)

    _RETURNING = """RETURNING w.seq, w.endpoint_id, w.entity, w.event_id, w.body, w.attempts,
                                w.created_at, w.locked_until, ep.url, ep.secret,
                                EXTRACT(EPOCH FROM w.created_at) AS created_s"""

    async def _claim(self, limit: int) -> list[asyncpg.Record]:
        """Lock up to ``limit`` due deliveries, each the oldest pending one of its
        (endpoint, entity)."""
        rows: list[asyncpg.Record] = await self._pool.fetch(
            """WITH due AS (
                 SELECT d.seq FROM dg_webhook_deliveries d
                  WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                    AND (d.locked_until IS NULL OR d.locked_until < now())
                    AND NOT EXISTS (SELECT 1 FROM dg_webhook_deliveries e
                                     WHERE e.endpoint_id = d.endpoint_id AND e.entity = d.entity
                                       AND e.status = 'pending' AND e.seq < d.seq)
                  ORDER BY d.next_attempt_at, d.seq LIMIT $1
                  FOR UPDATE OF d SKIP LOCKED)
               UPDATE dg_webhook_deliveries w
                  SET locked_until = now() + make_interval(secs => $2)
                 FROM due, dg_webhook_endpoints ep
                WHERE w.seq = due.seq AND ep.endpoint_id = w.endpoint_id
            """ + self._RETURNING, limit, self._settings.webhook_timeout_s + _LOCK_MARGIN_S)
        return rows

    async def _claim_next(self, endpoint_id: str, entity: str) -> asyncpg.Record | None:
        """The next delivery of one chain when it is due and free: its head by ``seq``
        (an index lookup, however long the chain)."""
        row: asyncpg.Record | None = await self._pool.fetchrow(
            """WITH head AS (
                 SELECT seq, next_attempt_at, locked_until FROM dg_webhook_deliveries
                  WHERE endpoint_id = $1 AND entity = $2 AND status = 'pending'
                  ORDER BY seq LIMIT 1 FOR UPDATE)
               UPDATE dg_webhook_deliveries w
                  SET locked_until = now() + make_interval(secs => $3)
                 FROM head, dg_webhook_endpoints ep
                WHERE w.seq = head.seq AND ep.endpoint_id = w.endpoint_id
                  AND head.next_attempt_at <= now()
                  AND (head.locked_until IS NULL OR head.locked_until < now())
            """ + self._RETURNING, endpoint_id, entity, self._settings.webhook_timeout_s + _LOCK_MARGIN_S)
        return row

    async def _chain(self, row: asyncpg.Record) -> None:
        """Deliver ``row``; after a success, go straight on with the next delivery of the
        same (endpoint, entity), so one busy entity is not paced by the poll interval."""
        current: asyncpg.Record | None = row
        while current is not None:
            if self._closing.is_set():
                await self._unlock(current)
                return
            if not await self._attempt(current):
                return
            try:
                current = await self._claim_next(current["endpoint_id"], current["entity"])
            except _TRANSIENT:
                return

    async def _unlock(self, row: asyncpg.Record) -> None:
        """Give back a delivery claimed but not attempted (the dispatcher is closing).
        Left locked, it would wait out its lock (the timeout plus ``_LOCK_MARGIN_S``)
        before another dispatcher could take it: a graceful close must not delay a
        delivery by half a minute. Only our own lock is lifted (its ``locked_until`` as we
        set it); on a transient failure the lock lapses as before."""
        try:
            await self._pool.execute(
                """UPDATE dg_webhook_deliveries SET locked_until = NULL
                    WHERE seq = $1 AND status = 'pending' AND locked_until = $2""",
                row["seq"], row["locked_until"])
        except _TRANSIENT:
            pass

    async def _attempt(self, row: asyncpg.Record) -> bool:
        """One attempt and its row; True when it was delivered."""
        ep = row["endpoint_id"]
        try:
            secret = self.store.box.open(row["secret"], endpoint_id=ep)
        except SecretKeyMismatch as exc:  # left locked: retried once its lock lapses
            log.error("webhook delivery %s not attempted: %s", row["seq"], exc)
            return False
        try:
            outcome = await self._deliverer.deliver(endpoint_id=ep, url=row["url"], secret=secret,
                                                    body=row["body"].encode())
            attempts = row["attempts"] + 1
            self._count(ep, outcome, attempts=attempts, created_ms=int(float(row["created_s"]) * 1000))
            async with self._pool.acquire() as conn, conn.transaction():
                if outcome.ok:
                    await conn.execute(
                        """UPDATE dg_webhook_deliveries
                              SET status = 'succeeded', attempts = $2, response_status = $3,
                                  last_error = NULL, last_attempt_at = now(), delivered_at = now(),
                                  locked_until = NULL
                            WHERE seq = $1 AND status = 'pending'""",
                        row["seq"], attempts, outcome.status)
                    await self._endpoint_health(conn, healthy={ep}, failing=set())
                    return True
                gave_up = await conn.fetchval(
                    """UPDATE dg_webhook_deliveries
                          SET attempts = $2, response_status = $3, last_error = $4,
                              last_attempt_at = now(), locked_until = NULL,
                              next_attempt_at = now() + make_interval(secs => $5),
                              status = CASE WHEN created_at < now() - make_interval(secs => $6)
                                            THEN 'failed' ELSE 'pending' END
                        WHERE seq = $1 AND status = 'pending'
                    RETURNING status = 'failed'""",
                    row["seq"], attempts, outcome.status, outcome.error,
                    retry_delay_s(attempts, self._settings), self._settings.webhook_retry_for_s)
                if gave_up:
                    self.stats.failed_deliveries[ep] += 1
                    log.warning("webhook delivery %s to %s failed for good after %d attempts: %s",
                                row["event_id"], ep, attempts, outcome.error)
                await self._endpoint_health(conn, healthy=set(), failing={ep})
        except Exception as exc:  # the lock lapses and the row is tried again
            self.stats.transient_errors += 1
            self.stats.last_error = repr(exc)
            log.warning("dispatcher %s: recording delivery %s failed: %r", self.name, row["seq"], exc)
        return False

    # -- endpoint health ------------------------------------------------------------------
    async def _endpoint_health(self, conn: asyncpg.Connection, *, healthy: set[str],
                               failing: set[str]) -> None:
        if healthy:
            await conn.execute(
                """UPDATE dg_webhook_endpoints SET failing_since = NULL
                    WHERE endpoint_id = ANY($1) AND failing_since IS NOT NULL""", list(healthy))
        if not failing:
            return
        disabled = await conn.fetch(
            """UPDATE dg_webhook_endpoints
                  SET failing_since = COALESCE(failing_since, now()),
                      disabled_at = CASE WHEN failing_since < now() - make_interval(secs => $2)
                                         THEN now() END
                WHERE endpoint_id = ANY($1) AND disabled_at IS NULL
            RETURNING endpoint_id, disabled_at IS NOT NULL AS disabled""",
            list(failing), self._settings.webhook_disable_after_s)
        for row in disabled:
            if not row["disabled"]:
                continue
            ep = row["endpoint_id"]
            self.stats.disabled_endpoints += 1
            self._endpoints.forget()
            failed = await conn.fetchval(
                """WITH f AS (UPDATE dg_webhook_deliveries
                                 SET status = 'failed', locked_until = NULL,
                                     last_error = COALESCE(last_error, 'endpoint disabled')
                               WHERE endpoint_id = $1 AND status = 'pending' RETURNING 1)
                   SELECT count(*) FROM f""", ep)
            self.stats.failed_deliveries[ep] += int(failed)
            log.warning("webhook endpoint %s disabled: every attempt failed for %.0fs (%d deliveries failed)",
                        ep, self._settings.webhook_disable_after_s, failed)

    def _count(self, endpoint_id: str, outcome: Outcome, *, attempts: int, created_ms: int) -> None:
        if attempts > 1:
            self.stats.retries[endpoint_id] += 1
        if outcome.ok:
            self.stats.successes[endpoint_id] += 1
            self.stats.lag_s[endpoint_id] = max(time.time() - created_ms / 1000, 0.0)
        else:
            self.stats.failures[endpoint_id] += 1
