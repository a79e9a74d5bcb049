"""The write-behind persister: applies each partition's event log to PostgreSQL.

Per partition, one persister at a time holds a lease (so the partition's events are
applied in log order), reads with the consumer group ``persister``, and applies a
batch in ONE PostgreSQL transaction that also advances the partition's committed
offset with a compare-and-set. Only after that commit does it XACK and trim the
stream (never past another group, the webhook dispatcher, still behind:
``persistence/trim.py``). So:

- an event at or below the committed offset is skipped: replaying any event, after a
  crash between commit and ack, changes nothing;
- a persister that lost its lease while paused fails its offset compare-and-set and
  rolls back: a stale duplicate cannot apply anything;
- a new owner claims the pending entries of a dead one (XAUTOCLAIM) and carries on;
- entries once delivered stay in memory (``_retry``) until acknowledged, whatever step
  fails (the apply, its XACK, or another partition's batch of the same read); an entry
  delivered but not held (a reply lost with its connection) is claimed back after a
  lease (``_reclaim_forgotten``). Either kind left in the group's pending list would
  stop trimming for good (``trim.py`` never trims past it), so the log would fill to
  ``max_backlog`` while the persister, idle, saw nothing to do;
- an iteration that takes longer than ``stall_after_s`` (an await that never returns)
  is cancelled and started again, its batch kept;
- while PostgreSQL is down, the batch stays in memory and is retried with backoff,
  in order; events are never lost or reordered;
- an event that fails with a data error ``persister_max_retries`` times goes to the
  dead-letter stream and table (in the transaction that moves the offset past it)
  instead of blocking its partition. An entry that does not decode into its event
  struct (``engine/events.py``: unknown type, missing or mistyped field, bad JSON) is
  such an event, its reason msgspec's message.

The partitions of one read are applied concurrently, each in its own transaction on its
own pooled connection (``persister_concurrency`` at once): a partition's batches stay
in log order, and partitions share no offset. While a partition's full batch is applied,
its next one is read and parsed (``persister_read_ahead``), and held behind it. The
appliers send a run of events as a few set-based statements (``unnest``, or one json
parameter for purchases), never one per event (BENCHMARKS.md, *Persister*).

Pipelining (``persister_pipeline``): when one partition alone has a backlog (a crowd on one
offer or code), two of its batches are applied at once, each in its own transaction: the
later one inserts its rows beside the earlier one, waits in PostgreSQL for its end before it
touches the rows both change (migration 0020), and commits after it, from the offset it
committed (``_apply_pipelined``; ``appliers/base.py: PipelineKey`` says which events may).

The stream's length is the persistence lag (more while the webhook dispatcher's
group is behind: a running dispatcher spills past ``webhook_spill_after``); the scripts
refuse writes past
``max_backlog`` (``dg_backlog_full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import asyncpg
import redis.exceptions
from redis.asyncio import Redis

from dropgate.engine.events import Event, Malformed
from dropgate.engine.keys import Keys
from dropgate.engine.periodic import pause
from dropgate.engine.redisclient import is_cluster
from dropgate.engine.scripts import Scripts
from dropgate.persistence.appliers import APPLIERS, PIPELINED, Applier, PipelineKey
from dropgate.persistence.claims import (
    ForgottenReads,
    by_partition,
    claim_pending,
    consumer_name,
    create_group,
    read_new,
)
from dropgate.persistence.database import AUTOVACUUM_OFF, autovacuum_off
from dropgate.persistence.leases import PartitionLeases
from dropgate.persistence.trim import trim_log
from dropgate.persistence.watermark import log_lengths
from dropgate.settings import Settings

log = logging.getLogger(__name__)

GROUP = "persister"
_TRANSIENT = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class PoisonEvent(Exception):
    """Raised by an applier for an event that can never apply (bad payload)."""


class MalformedEvent(PoisonEvent):
    """An entry that did not decode into its event struct; says which type and field."""


# Errors that mean "this event's data cannot apply": retried a bounded number of
# times, then dead-lettered. Anything else is treated as transient and retried
# without limit (a missing table is a deploy bug, not a reason to drop events).
_POISON = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    PoisonEvent,
    KeyError,
    ValueError,
    TypeError,
)


def _raise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


class _LeaseLost(Exception):
    """Another persister advanced the partition's offset: ours is stale."""


class _Open:
    """A batch applied in a transaction not yet committed, on a connection taken from the
    pool for it: asyncpg's own context managers (the transaction's, the pool's) entered and
    left by ``commit`` (commit, then release) or ``discard`` (roll back, then release)."""

    def __init__(self, conn: Any, stack: contextlib.AsyncExitStack, events: list[Event[Any]],
                 dead_letter: bool) -> None:
        self.conn = conn
        self.events = events
        self.dead_letter = dead_letter
        self._stack = stack

    async def commit(self) -> None:
        await self._stack.aclose()

    async def discard(self, exc: BaseException) -> None:
        """Roll back and release because of ``exc`` (a connection already broken is
        closed by the pool instead)."""
        with contextlib.suppress(Exception):
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)


class _Behind(Exception):
    """A pipelined batch rolled back because the batch before it failed."""


@dataclass(eq=False)
class _Flight:
    """A pipelined batch: its events, their row keys, its advisory lock's key (held from its
    transaction's start to its end) and the task applying it (``Persister._fly``)."""

    events: list[Event[Any]]
    keys: set[Hashable]
    lock: int
    locked: asyncio.Event = field(default_factory=asyncio.Event)  # its transaction holds ``lock``
    task: asyncio.Future[None] = field(init=False)


def _lock_class(name: str) -> int:
    """A signed 32-bit number for ``name``: the high half of its advisory lock keys."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


async def _settle(*futures: asyncio.Future[Any] | None, cancel: bool) -> None:
    """Let each of ``futures`` end (cancelled first if ``cancel``), whatever it raises: a
    pipeline that failed at one step leaves no read or commit running unseen."""
    for future in futures:
        if future is None:
            continue
        if cancel:
            future.cancel()
        with contextlib.suppress(BaseException):
            await future


@dataclass
class PersisterStats:
    applied_events: int = 0
    batches: int = 0
    dead_letters: int = 0
    retries: int = 0
    skipped_replays: int = 0
    transient_errors: int = 0
    reclaimed: int = 0  # delivered entries found pending but no longer held: claimed back
    stalls: int = 0  # iterations cancelled by the watchdog
    read_ahead: int = 0  # batches read while the one before them was applied
    pipelined: int = 0  # batches applied while the one before them committed
    last_error: str | None = None
    lag: dict[int, int] = field(default_factory=dict)


class Persister:
    """Owns whatever partitions it can lease; ``run()`` forever or ``run_once()`` in tests."""

    def __init__(
        self,
        *,
        redis: Redis,
        pool: asyncpg.Pool,
        keys: Keys,
        scripts: Scripts,
        settings: Settings,
        appliers: dict[str, Applier] | None = None,
        pipelined: dict[str, PipelineKey] | None = None,
        name: str | None = None,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._keys = keys
        self._scripts = scripts
        self._settings = settings
        self._appliers = appliers if appliers is not None else APPLIERS
        self._pipelined = pipelined if pipelined is not None else PIPELINED
        self._serial: set[int] = set()  # partitions whose next batch goes alone (a data error)
        self.name = name or consumer_name()
        # the high half of this persister's pipelined batches' advisory lock keys (migration 0020)
        self._pipeline_class = _lock_class(f"dropgate pipeline {settings.database_schema or ''} {self.name}")
        self._flights = itertools.count(1)
        self.stats = PersisterStats()
        self._leases = PartitionLeases(
            scripts=scripts, partitions=keys.partitions, lease_key=keys.persister_lease,
            members_key=keys.persister_members(), owner=self.name,
            lease_ms=settings.persister_lease_ms, role="persister")
        self._owned = self._leases.owned  # the same set: what it leased and took
        self._offsets: dict[int, tuple[int, int]] = {}
        self._retry: dict[int, list[Event[Any]]] = {}
        self._attempts: dict[str, int] = {}
        self._not_before: dict[int, float] = {}
        self._groups_ready: set[int] = set()
        # Partitions to take back what this persister was delivered and does not hold,
        # before reading anything newer (``_recover_pending``).
        self._recover: set[int] = set()
        self._stream_partition = {keys.log(p): p for p in range(keys.partitions)}
        self._closing = asyncio.Event()
        # One pass at a time: ``run_once`` called from several tasks (a test's writers,
        # ``drain`` beside ``run``) would otherwise commit one partition's batch twice
        # over, read the second as a lost lease and drop the partition under the other.
        self._one_pass = asyncio.Lock()
        self._cluster = is_cluster(redis)
        self._forgotten = ForgottenReads(group=GROUP, consumer=self.name, lease_ms=settings.persister_lease_ms,
                                         count=settings.persister_batch_size)

    @property
    def stall_after_s(self) -> float:
        """How long one iteration may take before the watchdog restarts it: many leases
        (a batch commit under load takes a fraction of one), and never under 30 s."""
        return max(30.0, 5 * self._settings.persister_lease_ms / 1000)

    # -- lifecycle -------------------------------------------------------------------
    async def run(self) -> None:
        """Apply events until ``close()``; transient failures back off and retry."""
        # a warning, not a requirement: PostgreSQL may be starting or slow, and the
        # persister's work must not wait on it
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                off = await autovacuum_off(self._pool)
            if off:
                log.warning("persister %s: %s", self.name, AUTOVACUUM_OFF)
        delay = 0.05
        while not self._closing.is_set():
            _raise_if_cancelling()
            try:
                async with asyncio.timeout(self.stall_after_s):
                    await self._iteration(block_ms=self._settings.persister_block_ms)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                _raise_if_cancelling()
                self.stats.stalls += 1
                self.stats.last_error = f"iteration stalled for {self.stall_after_s:.0f}s"
                log.error("persister %s: an iteration made no progress for %.0fs; cancelled it and "
                          "starting again (its batch is kept)", self.name, self.stall_after_s)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
            except _TRANSIENT as exc:
                _raise_if_cancelling()  # a library that turned our cancellation into an error
                self.stats.transient_errors += 1
                self.stats.last_error = repr(exc)
                log.warning("persister %s: %r; retrying in %.2fs", self.name, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                _raise_if_cancelling()
                log.exception("persister %s: unexpected error", self.name)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
        await self._release_leases()

    async def run_once(self) -> int:
        """One pass without blocking: apply what is in the owned logs now."""
        return await self._iteration(block_ms=None)

    async def drain(self, *, timeout_s: float = 60.0) -> None:
        """Run until every partition's log is empty (tests, demo, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while True:
            applied = 0
            try:
                applied = await self.run_once()
            except _TRANSIENT as exc:
                self.stats.last_error = repr(exc)
                await asyncio.sleep(0.1)
            lag = await self.lag()
            if sum(lag.values()) == 0 and not any(self._retry.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"persister did not drain in {timeout_s}s: lag {lag}, "
                                   f"last error {self.stats.last_error}")
            if not applied:  # a pass that applied something goes straight on to the next
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closing.set()

    async def _sleep(self, seconds: float) -> None:
        await pause(self._closing, seconds)

    async def lag(self) -> dict[int, int]:
        """Unpersisted events per partition (the stream keeps only those)."""
        self.stats.lag = await log_lengths(self._redis, self._keys)
        return self.stats.lag

    # -- one iteration -----------------------------------------------------------------
    async def _iteration(self, *, block_ms: int | None) -> int:
        async with self._one_pass:
            try:
                return await self._iteration_alone(block_ms=block_ms)
            except BaseException:
                # A read whose reply was lost (Redis killed, a socket timeout, this pass
                # cancelled) left entries pending under this name that it never saw.
                self._recover.update(self._owned)
                raise

    async def _iteration_alone(self, *, block_ms: int | None) -> int:
        try:
            return await self._iterate(block_ms=block_ms)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost its state (restarted without its AOF, flushed, then restored):
            # the streams and groups are new. Take the partitions afresh; the committed
            # offsets in PostgreSQL still say what was applied.
            log.warning("persister %s: consumer group gone (%s); taking the partitions afresh", self.name, exc)
            self._groups_ready.clear()
            for p in list(self._owned):
                self._drop_partition(p)
            self._leases.expire_now()
            return 0

    async def _iterate(self, *, block_ms: int | None) -> int:
        await self._refresh_leases()
        await self._recover_pending()
        await self._reclaim_forgotten()
        applied = 0
        due = self._due()
        if due:
            applied += await self._apply_reading_ahead(due)
        ready = [p for p in sorted(self._owned) if not self._retry.get(p)]
        response = None
        if ready:
            # Never XREADGROUP ... BLOCK: a task cancelled while redis-py waits on a
            # blocking read can be left waiting forever on the socket. Poll instead,
            # and sleep interruptibly (close() wakes it) when there was nothing.
            response = await self._read(ready)
        streams: Any = response or []  # RESP2: [[stream, [(id, fields), ...]], ...]
        delivered: list[int] = []
        for p, events in by_partition(streams, self._stream_partition):
            # Held before any is applied: if one partition's batch fails, the
            # others of this read are not dropped on the floor (still pending in
            # the group, never delivered again).
            self._retry[p] = events
            delivered.append(p)
        applied += await self._apply_reading_ahead(delivered)
        if block_ms and not streams and not self._due():
            await self._sleep(block_ms / 1000)
        return applied

    def _due(self) -> list[int]:
        """The owned partitions holding a batch to apply now (read ahead, or retried after
        its backoff): the next pass has work, whatever the read found."""
        now = time.monotonic()
        return [p for p in sorted(self._owned) if self._retry.get(p) and self._not_before.get(p, 0.0) <= now]

    async def _read(self, partitions: list[int]) -> Any:
        """New entries of the partitions' logs (``claims.read_new``)."""
        streams, failure = await read_new(self._redis, self._keys, partitions, group=GROUP,
                                          consumer=self.name, count=self._settings.persister_batch_size,
                                          cluster=self._cluster)
        if failure is not None:
            # The reads that worked made their entries pending under this name: held
            # to be applied first next pass, not left to a claim-back a lease later.
            for p, events in by_partition(streams, self._stream_partition):
                self._retry[p] = events
            raise failure
        return streams

    async def _refresh_leases(self) -> None:
        """Renew this persister's membership and hold a fair share of the partitions
        (``PartitionLeases.refresh``); a partition handed over or lost is dropped."""
        _gained, lost = await self._leases.refresh(take=self._take_partition)
        for p in lost:
            self._drop_partition(p)

    @property
    def partitions(self) -> set[int]:
        """The partitions this persister holds now."""
        return set(self._owned)

    async def _release_leases(self) -> None:
        with contextlib.suppress(*_TRANSIENT):
            await self._leases.leave()
        await self._release_partitions()

    async def _release_partitions(self) -> None:
        for p in list(self._owned):
            try:
                await self._scripts.call(
                    "persister_lease", [self._keys.persister_lease(p)], [self.name, 0]
                )
            except _TRANSIENT:
                pass
            self._drop_partition(p)

    def _drop_partition(self, p: int) -> None:
        self._owned.discard(p)
        self._retry.pop(p, None)
        self._offsets.pop(p, None)
        self._serial.discard(p)

    async def _take_partition(self, p: int) -> None:
        """Newly leased: create the group, load the offset, claim pending entries."""
        if p not in self._groups_ready:
            await create_group(self._redis, self._keys.log(p), GROUP)
            self._groups_ready.add(p)
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO dg_partition_offsets (partition) VALUES ($1) ON CONFLICT DO NOTHING", p
            )
            row = await conn.fetchrow(
                "SELECT last_ms, last_seq FROM dg_partition_offsets WHERE partition = $1", p
            )
        self._offsets[p] = (row["last_ms"], row["last_seq"])
        claimed = await self._claim_pending(p, min_idle_ms=0)
        if claimed:
            log.info("persister %s claimed %d pending events of partition %d",
                     self.name, len(claimed), p)
            self._retry[p] = claimed
        self._owned.add(p)

    async def _claim_pending(self, p: int, *, min_idle_ms: int) -> list[Event[Any]]:
        """Take over the group's pending entries of partition ``p`` idle at least
        ``min_idle_ms``, in log order (``claims.claim_pending``)."""
        return await claim_pending(self._redis, self._keys, p, group=GROUP, consumer=self.name,
                                   min_idle_ms=min_idle_ms, count=self._settings.persister_batch_size)

    async def _recover_pending(self) -> None:
        """After a failed pass, before any newer read: take back, in log order, the
        entries of each owned partition delivered to this persister and not held. Left
        for ``_reclaim_forgotten`` a lease later, they came after newer entries had been
        committed; the committed offset had passed them, so they were taken for replays
        and acknowledged unapplied. The fault lab saw exactly that after a kill -9 of
        Redis: 7 redemptions and 4 purchase changes in Redis and never in PostgreSQL.
        A partition with a held batch has nothing else pending: no read of it ran since."""
        for p in sorted(self._recover):
            if p in self._owned and not self._retry.get(p):
                claimed = await self._claim_pending(p, min_idle_ms=0)
                if claimed:
                    log.warning("persister %s: took back %d entries of partition %d delivered by a read "
                                "whose reply was lost", self.name, len(claimed), p)
                    self.stats.reclaimed += len(claimed)
                    self._retry[p] = claimed
            self._recover.discard(p)

    async def _reclaim_forgotten(self) -> None:
        """Once a lease: claim back the entries delivered to the group for an owned
        partition that this persister does not hold in memory. Between iterations every
        delivered entry is either acknowledged or in ``_retry``, so one pending for
        longer than a lease was delivered but never seen: the XREADGROUP ran and its
        reply was lost with the connection (Redis killed, a socket timeout under load),
        or an older version dropped it after a failed XACK. Left there it would stop
        trimming at its id, forever (``claims.ForgottenReads``). A last resort since
        ``_recover_pending`` takes a lost read back on the next pass: what this finds a
        lease later may lie below the committed offset and then counts as a replay."""
        found = await self._forgotten.claim(self._redis, self._keys, owned=self._owned, held=self._retry)
        for p, claimed in found.items():
            if p in self._owned and not self._retry.get(p):
                self.stats.reclaimed += len(claimed)
                self._retry[p] = claimed

    # -- applying --------------------------------------------------------------------
    async def _apply_reading_ahead(self, partitions: list[int]) -> int:
        """``_apply_partitions``, and meanwhile, for those holding a full batch (one read's
        worth: their logs likely hold more), the next read: while PostgreSQL applies one
        batch, Redis and this process read and parse the next (BENCHMARKS.md, "The offers
        persister: one json parameter, and reading ahead").

        What the read-ahead delivered is held behind the partition's batch, whatever became
        of that batch (applied, or held again to retry), so log order is kept and at most
        two batches a partition are in memory. A read-ahead that failed may have delivered
        entries whose reply was lost: those partitions let go of what they hold and take
        everything pending back from the group, in log order, on the next pass
        (``_recover_pending``), before reading anything newer."""
        batch = self._settings.persister_batch_size
        ahead = [p for p in partitions if len(self._retry.get(p, ())) == batch]
        if not ahead or not self._settings.persister_read_ahead:
            return await self._apply_partitions(partitions)
        if len(partitions) == 1 and self._settings.persister_pipeline:
            if partitions[0] not in self._serial:
                return await self._apply_pipelined(partitions[0])
            self._serial.discard(partitions[0])
        applying = asyncio.ensure_future(self._apply_partitions(partitions))
        streams: Any = []
        failure: BaseException | None = None
        try:
            streams, failure = await read_new(
                self._redis, self._keys, ahead, group=GROUP, consumer=self.name, count=batch,
                cluster=self._cluster)
        except asyncio.CancelledError:
            await _settle(applying, cancel=True)
            self._take_back(ahead)
            raise
        except Exception as exc:
            failure = exc
        try:
            applied = await applying
        finally:
            if failure is None:
                for p, events in by_partition(streams, self._stream_partition):
                    self._hold_behind(p, events)
            else:
                self._take_back(ahead)
        if failure is not None:
            raise failure
        return applied

    async def _apply_pipelined(self, p: int) -> int:
        """One hot partition's backlog, two batches applied at once on two connections.

        The only partition with work holds a full batch: its log likely holds more, and one
        PostgreSQL backend applying one batch after another would set its rate. So each batch
        is applied in a transaction of its own (``_fly``) while the one before it is still
        applied and committed: the two insert their rows on two backends at once, and the
        later one waits, at the end of its first statement, for the earlier one's COMMIT
        before it touches the rows both change (the hot counter row: migration 0020); the
        next read runs beside both. The commits stay in log order: a batch's offset
        compare-and-set starts from the offset the one before it committed, after that
        commit. Taken only by runs of ``PIPELINED`` types sharing no row key with the batch
        before (``appliers/base.py`` says why they give the rows they would give one after
        the other); anything else (another type, a replay, an undecodable entry, a shared
        key) ends the pipeline, and that batch goes the ordinary way (``_apply``).

        Bounded to a sixth of a lease, so that the leases are renewed in time. If a batch
        fails, those after it are rolled back, every batch is let end (cancelled when this
        pass is), and what was not committed is held again in log order: retried after a
        transient error, applied one batch at a time next (``_serial``) after a data error,
        so that ``_apply`` isolates the bad event; a lost lease drops the partition."""
        batch_size = self._settings.persister_batch_size
        until = time.monotonic() + self._settings.persister_lease_ms / 6000
        current = self._retry.pop(p)
        flights: list[_Flight] = []  # started and not yet counted, in log order (at most two)
        reading: asyncio.Future[list[Event[Any]]] | None = None
        applied = 0
        try:
            while current:
                if (reading is None and len(current) == batch_size and time.monotonic() < until
                        and not self._closing.is_set()):
                    reading = asyncio.ensure_future(self._read_partition(p))
                before = flights[-1] if flights else None
                keys = self._pipeline_keys(p, current, before)
                if keys is None:
                    break
                flights.append(_Flight(current, keys, self._pipeline_lock()))
                flights[-1].task = asyncio.ensure_future(self._fly(p, flights[-1], before))
                current = []
                if before is not None:  # two in flight: the next starts once the older is committed
                    await before.task
                    applied += len(flights.pop(0).events)
                if reading is None:
                    break
                current = await reading
                reading = None
                if current:
                    self.stats.read_ahead += 1
            while flights:
                await flights[0].task
                applied += len(flights.pop(0).events)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            await _settle(reading, *(f.task for f in flights), cancel=cancelled)
            if cancelled:
                self._take_back([p])
                raise
            return applied + await self._pipeline_failed(p, flights, current, reading, exc)
        try:
            if current:
                applied += await self._apply(p, current)
        finally:
            if reading is not None:
                try:
                    events = await reading
                except BaseException:
                    self._take_back([p])
                    raise
                self._hold_behind(p, events)
        return applied

    def _hold_behind(self, p: int, events: list[Event[Any]]) -> None:
        """What a read-ahead delivered for ``p``, held behind what ``p`` holds (a partition
        no longer owned leaves it pending in the group, for its next holder)."""
        if p in self._owned and events:
            self._retry[p] = self._retry.get(p, []) + events
            self.stats.read_ahead += 1

    async def _fly(self, p: int, flight: _Flight, before: _Flight | None) -> None:
        """Apply ``flight`` in its own transaction, holding its advisory lock and naming the
        one of ``before`` (still in flight) for its first statement to wait on; commit it
        once ``before`` is committed (if ``before`` fails, roll back: ``_Behind``)."""
        if before is not None:
            # not before ``before`` holds its lock: this batch's wait could find it free, take the
            # counter row first, and wait here for a batch that waits on that row in PostgreSQL
            locked: asyncio.Future[Any] = asyncio.ensure_future(before.locked.wait())
            try:
                await asyncio.wait([locked, before.task], return_when=asyncio.FIRST_COMPLETED)
            finally:
                locked.cancel()
            if not before.locked.is_set():
                raise _Behind()  # it failed first: its task says why
        opened = await self._open(p, flight.events, pipeline=(
            flight.lock, "" if before is None else str(before.lock), flight.locked))
        if before is not None:
            try:
                await asyncio.shield(before.task)
            except BaseException as exc:
                await opened.discard(exc)
                raise _Behind() from exc
            self.stats.pipelined += 1
        await self._close(p, opened)

    def _pipeline_lock(self) -> int:
        """A new batch's advisory lock key (bigint): this persister's class, then a number it
        never gave before (a key taken again could be the one a later batch still waits on)."""
        return (self._pipeline_class << 32) | (next(self._flights) & 0xFFFF_FFFF)

    async def _pipeline_failed(self, p: int, flights: list[_Flight], current: list[Event[Any]],
                               reading: asyncio.Future[list[Event[Any]]] | None, exc: BaseException) -> int:
        """After a pipeline's failure, every batch ended: count what committed, hold the rest
        (with what was read meanwhile) in log order, and say how the partition goes on."""
        applied = 0
        held: list[Event[Any]] = []
        first: BaseException | None = None
        for flight in flights:
            failure = flight.task.exception() if not flight.task.cancelled() else asyncio.CancelledError()
            if failure is None and not held:
                applied += len(flight.events)
                continue
            held += flight.events  # a commit whose XACK failed is held too: a replay next time
            if first is None and failure is not None and not isinstance(failure, _Behind):
                first = failure
        held += current
        first = first or exc
        if reading is not None:
            if reading.cancelled() or reading.exception() is not None:
                self._take_back([p])  # it may have delivered entries never seen
                raise first
            held += reading.result()
        if isinstance(first, _LeaseLost):
            self._lost(p)  # the rest stays pending in the group, for the partition's next holder
            return applied
        if p in self._owned:
            self._retry[p] = held
        if isinstance(first, _POISON):
            self._serial.add(p)  # one batch at a time, so that ``_apply`` isolates the bad event
            return applied
        raise first

    def _pipeline_keys(self, p: int, events: list[Event[Any]], before: _Flight | None) -> set[Hashable] | None:
        """The row keys of ``events`` if they may be applied beside ``before`` (or, with
        nothing before, as the first of a pipeline); None if not."""
        offset = before.events[-1].position if before is not None else self._offsets.get(p)
        # a batch is in log order (one read's, or claimed entries sorted): its first event
        # past the offset puts every one past it (an event's position is parsed from its id,
        # a visible share of this loop when done per event)
        if offset is None or not events or events[0].position <= offset:
            return None
        keys: set[Hashable] = set()
        pipelined = self._pipelined
        for e in events:
            key_of = pipelined.get(e.type)
            if key_of is None or isinstance(e.data, Malformed):
                return None
            keys.add(key_of(e))
        return keys if before is None or keys.isdisjoint(before.keys) else None

    async def _read_partition(self, p: int) -> list[Event[Any]]:
        """The next new entries of partition ``p`` (a read that fails raises)."""
        streams, failure = await read_new(
            self._redis, self._keys, [p], group=GROUP, consumer=self.name,
            count=self._settings.persister_batch_size, cluster=self._cluster)
        if failure is not None:
            raise failure
        return [e for q, events in by_partition(streams, self._stream_partition) if q == p for e in events]

    def _take_back(self, partitions: list[int]) -> None:
        """A read-ahead of ``partitions`` failed: what it delivered may be pending unseen,
        behind what they hold. Let go of that (pending in the group too, or applied) so
        that ``_recover_pending`` claims both back in log order."""
        for p in partitions:
            self._retry.pop(p, None)
            self._recover.add(p)

    async def _apply_partitions(self, partitions: list[int]) -> int:
        """The batches held in ``_retry`` for ``partitions``, each in its own transaction,
        ``persister_concurrency`` at once over the pool: partitions are independent (their
        own offsets, their own rows), so a crowd spread over tenants is applied on several
        connections, while within one partition the batches stay in log order. A batch
        leaves ``_retry`` only when its turn comes (one not yet started stays held, as in
        the sequential loop). Every started batch runs to its end even when another fails
        (a failed one is held again by ``_apply``); then the first failure is raised."""
        if len(partitions) <= 1 or self._settings.persister_concurrency <= 1:
            applied = 0
            for p in partitions:
                applied += await self._apply(p, self._retry.pop(p))
            return applied
        gate = asyncio.Semaphore(self._settings.persister_concurrency)

        async def one(p: int) -> int:
            async with gate:
                return await self._apply(p, self._retry.pop(p))

        results = await asyncio.gather(*(one(p) for p in partitions), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def _apply(self, p: int, events: list[Event[Any]]) -> int:
        offset = self._offsets.get(p)
        if offset is None:
            # Dropped since this batch was read (its lease lost, its group gone): the
            # entries stay pending in the group, where the partition's next holder
            # claims them (``_take_partition``).
            return 0
        replays = [e for e in events if e.position <= offset]
        pending = [e for e in events if e.position > offset]
        if replays:
            try:
                await self._ack(p, replays, trim=True)
            except BaseException:
                # Redis still down after a commit whose XACK failed: keep the whole
                # batch (the replays are acknowledged next time, nothing reapplied).
                # Dropped here, they would stay pending in the group for good.
                self._retry[p] = events
                raise
            self.stats.skipped_replays += len(replays)
        if not pending:
            return 0
        try:
            await self._commit(p, pending)
        except _LeaseLost:
            self._lost(p)
            return 0
        except _POISON as exc:
            if len(pending) == 1:
                await self._failed(p, pending, exc)
                return 0
            return await self._apply_one_by_one(p, pending)
        except BaseException:
            self._retry[p] = pending  # PostgreSQL down or the like: same batch, later
            raise
        return len(pending)

    def _lost(self, p: int) -> None:
        log.warning("persister %s: partition %d moved on without it", self.name, p)
        self._drop_partition(p)
        self._leases.expire_now()

    async def _apply_one_by_one(self, p: int, events: list[Event[Any]]) -> int:
        """A batch failed on data: commit event by event to isolate the bad one."""
        applied = 0
        for i, event in enumerate(events):
            try:
                await self._commit(p, [event])
            except _LeaseLost:
                self._lost(p)
                return applied
            except _POISON as exc:
                await self._failed(p, events[i:], exc)
                return applied
            except BaseException:
                self._retry[p] = events[i:]
                raise
            applied += 1
        return applied

    async def _failed(self, p: int, events: list[Event[Any]], exc: BaseException) -> None:
        """``events[0]`` failed on data: retry it later, or dead-letter it at the limit."""
        event = events[0]
        attempts = self._attempts.get(event.id, 0) + 1
        self._attempts[event.id] = attempts
        self.stats.last_error = f"{event.type} {event.entity}: {exc!r}"
        if attempts < self._settings.persister_max_retries:
            self.stats.retries += 1
            delay = self._settings.persister_retry_base_ms / 1000 * 2 ** (attempts - 1)
            log.warning("persister: event %s (%s) failed (%r), attempt %d; retry in %.2fs",
                        event.id, event.type, exc, attempts, delay)
            self._retry[p] = events
            self._not_before[p] = time.monotonic() + delay
            return
        log.error("persister: event %s (%s %s) dead-lettered after %d attempts: %r",
                  event.id, event.type, event.entity, attempts, exc)
        try:
            await self._commit(p, [event], dead_letter=(repr(exc), attempts))
        except _LeaseLost:
            self._lost(p)
            return
        except BaseException:
            self._retry[p] = events
            raise
        if len(events) > 1:  # held before the XADD below, which may fail
            self._retry[p] = events[1:]
        await self._redis.xadd(
            self._keys.dead_letters(p),
            {"id": event.id, "t": event.type, "e": event.entity, "v": str(event.version),
             "d": event.raw, "error": repr(exc), "attempts": str(attempts)},
        )
        self.stats.dead_letters += 1
        self._attempts.pop(event.id, None)

    async def _commit(
        self, p: int, events: list[Event[Any]], *, dead_letter: tuple[str, int] | None = None
    ) -> None:
        """``events`` applied (or the first dead-lettered) and committed in one transaction."""
        await self._close(p, await self._open(p, events, dead_letter=dead_letter))

    async def _open(
        self, p: int, events: list[Event[Any]], *, dead_letter: tuple[str, int] | None = None,
        pipeline: tuple[int, str, asyncio.Event] | None = None,
    ) -> _Open:
        """``events`` applied in a transaction left open (``_close`` commits it), on a
        connection of the pool's own. ``pipeline``: the advisory lock this transaction holds,
        the one its first statement waits on (``_fly``, migration 0020), and the event set
        once it holds its own."""
        stack = contextlib.AsyncExitStack()
        conn = await stack.enter_async_context(self._pool.acquire())
        opened = _Open(conn, stack, events, dead_letter is not None)
        try:
            await stack.enter_async_context(conn.transaction())
            if pipeline is not None:
                lock, after, locked = pipeline
                await conn.execute("SELECT pg_advisory_xact_lock($1), set_config('dropgate.pipeline_after', $2, true)",
                                   lock, after)
                locked.set()
            if dead_letter is None:
                for e in events:
                    if isinstance(e.data, Malformed):
                        raise MalformedEvent(e.data.reason)
                for etype, run in groupby(events, key=lambda e: e.type):
                    applier = self._appliers.get(etype)
                    if applier is None:
                        raise PoisonEvent(f"no applier for event type {etype!r}")
                    await applier(conn, list(run))
            else:
                e = events[0]
                await conn.execute(
                    """INSERT INTO dg_dead_letters
                         (partition, stream_id, event_type, entity, version, payload, error, attempts)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING""",
                    p, e.id, e.type, e.entity, e.version,
                    _payload_text(e.raw), dead_letter[0], dead_letter[1],
                )
        except BaseException as exc:
            await opened.discard(exc)
            raise
        return opened

    async def _close(self, p: int, batch: _Open) -> None:
        """Move the partition's offset from where this persister committed it last to the
        batch's last event (compare-and-set: a persister that lost its lease fails it and
        rolls back), commit, then acknowledge and trim."""
        events = batch.events
        prev = self._offsets.get(p)
        last = events[-1].position
        try:
            if prev is None:  # dropped meanwhile: another holds the partition now
                raise _LeaseLost()
            moved = await batch.conn.fetchval(
                """UPDATE dg_partition_offsets
                      SET last_ms = $2, last_seq = $3, updated_at = now(),
                          applied_events = applied_events + $4
                    WHERE partition = $1 AND last_ms = $5 AND last_seq = $6
                RETURNING 1""",
                p, last[0], last[1], 0 if batch.dead_letter else len(events), prev[0], prev[1],
            )
            if moved is None:
                raise _LeaseLost()
        except BaseException as exc:
            await batch.discard(exc)
            raise
        await batch.commit()
        self._offsets[p] = last
        for e in events:
            self._attempts.pop(e.id, None)
        if not batch.dead_letter:
            self.stats.applied_events += len(events)
            self.stats.batches += 1
        await self._ack(p, events, trim=True)

    async def _ack(self, p: int, events: list[Event[Any]], *, trim: bool) -> None:
        stream = self._keys.log(p)
        ids = [e.id for e in events]
        await self._redis.xack(stream, GROUP, *ids)
        if trim:  # never past another group (the webhook dispatcher) still behind
            ms, seq = self._offsets[p]
            await trim_log(self._redis, stream, upto=(ms, seq + 1))


def _payload_text(raw: bytes) -> str:
    """The payload as the script wrote it, for the dead letter's text column (which
    takes no NUL byte and only UTF-8: bad JSON may hold either)."""
    return raw.decode(errors="backslashreplace").replace("\x00", "\\u0000")
