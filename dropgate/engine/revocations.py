"""Per-partition revocation versions, read once per request without one read per request.

``apikey_revoke`` bumps ``<prefix>:{pN}:apikeys:revocations``. Every authenticated
request compares its partition's current version with the one its cached key answer
was built under; a difference means "look the key up again". For that comparison to
make revocation immediate, the version a request sees must come from a read *issued
after the request arrived* (a read already in flight may predate the revoke).

``RevocationClock.read`` gives exactly that, cheaply: requests that arrive while a
read is in flight wait for the next one, so a crowd of requests costs one Redis round
trip per batch (one GET, or a pipeline of GETs when several partitions are asked),
not one per request.

That read is the fallback. The hot path awaits nothing while the process's poller is
healthy: ``poll`` (started by the first ``view`` call) runs ``apikey_poll`` on every
partition each ``revocation_poll_ms``: it records in Redis, with Redis's clock, the
versions this process had applied when the poll was sent, and reads the current ones.
``view`` answers those versions only while the last successful poll was *sent* less than
half a lease ago (monotonic clock), else None: the caller then uses ``read``.
``revoke_wait`` (after ``apikey_revoke``) returns once every record of the
partition claims the new version or is older than the lease, by Redis's clock. Why
that is immediate: a record older than the lease at check time C means the process's
last poll ran before C - lease, so its view went stale locally before C - lease/2 and
it reads per request; a record claiming the version means the process applied it
before sending that poll, and views only grow.
Script <-> method: ``apikey_poll-2.lua`` <-> ``poll``, ``apikey_revoke_wait-1.lua``
<-> ``revoke_wait``, ``apikey_revocations_floor-2.lua`` <-> ``revocations_floor``.

Stopping: ``close`` ends the poller and the batch reader and nothing starts them again
(``view`` answers None and ``read`` reads directly once closed). The background loops do
not rely on the CancelledError reaching them: on Python 3.11, ``asyncio.wait_for`` (redis-py
sends every command through it) returns the inner result and drops a cancel that lands as
the inner call finishes, so a cancelled poller would poll on and ``close`` await it forever.
Each loop also stops when its task has a cancel requested (``Task.cancelling``) or the
clock is closed. Removing the records on close is bounded by the lease: past it, revokers
no longer wait for them anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import Scripts, decode_result
from dropgate.errors import Unavailable

log = logging.getLogger(__name__)


async def revocations_floor(scripts: Scripts, keys: Keys) -> list[int]:
    """Every partition's revocation version lifted to Redis's clock in ms. A lost Redis
    restarts the versions at 0 while serving processes still hold answers cached under
    the old ones, and a hit is trusted while its version is >= the current one: a key
    revoked after the restore would be served from such a cache. The processes' poll
    records were lost too: a `restore` record makes revokes wait a lease for them.
    Returns the versions."""
    return [await scripts.call("apikey_revocations_floor", [keys.api_key_revocations(p), keys.api_key_pollers(p)],
                               [], type=int)
            for p in range(keys.partitions)]


class RevocationClock:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts | None = None, *,
                 poll_ms: int = 50, lease_ms: int = 2_000) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts  # None: no poller, every read goes to Redis
        self._poll_s = poll_ms / 1000
        self._lease_ms = lease_ms
        self._process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._view: list[int] = []
        self._fresh_until = 0.0  # monotonic: the view may be used before this
        self._poller: asyncio.Task[None] | None = None
        self.polls = 0
        self.paused = False  # tests: the poller skips its polls (a stalled process)
        # partition -> the callers waiting for the next read (each its own future: a caller
        # cancelled leaves the others be, without the extra future and callbacks of a shield)
        self._next: dict[int, list[asyncio.Future[int]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def read(self, partition: int) -> int:
        """The partition's revocation version, read after this call began."""
        if self._closed:  # no batch reader outlives close: a read of its own
            return await self.read_now(partition)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        waiters = self._next.get(partition)
        if waiters is None:
            self._next[partition] = [waiter]
        else:
            waiters.append(waiter)
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await waiter

    def view(self) -> list[int] | None:
        """Every partition's version as of a poll sent less than half a lease ago, else
        None (starts the poller on first call)."""
        if time.monotonic() < self._fresh_until:
            return self._view
        if self._poller is None and self._scripts is not None and not self._closed:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        return None

    def _stopping(self, task: asyncio.Task[None]) -> bool:
        """Closed, or a cancel was requested even if a library swallowed its
        CancelledError (Python 3.11's ``asyncio.wait_for``, see the module docstring)."""
        return self._closed or task.cancelling() > 0

    async def _poll_forever(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        applied = [-1] * self._keys.partitions
        ttl = str(self._lease_ms * 10)
        while not self._stopping(me):
            if self.paused:
                await asyncio.sleep(self._poll_s)
                continue
            sent = time.monotonic()
            try:
                versions = await self.poll(applied, ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the view goes stale, requests read per request
                log.debug("revocation poll failed: %r", exc)
                await asyncio.sleep(self._poll_s)
                continue
            if self._stopping(me):  # closed during the poll: its answer is not used
                return
            self.polls += 1
            changed = versions != applied
            self._view = applied = versions
            self._fresh_until = sent + self._lease_ms / 2000
            if not changed:  # changed: poll again at once, to acknowledge it
                await asyncio.sleep(self._poll_s)

    async def poll(self, applied: list[int], ttl: str) -> list[int]:
        """Record ``applied`` for this process and read the current versions."""
        assert self._scripts is not None
        # ``async with``: redis-py loads a pipeline's scripts (SCRIPT EXISTS) before the
        # part of ``execute`` that gives the connection back, so a poll cancelled there
        # (every close) kept a connection out of the pool until the collector found it
        async with self._redis.pipeline(transaction=False) as pipe:
            for p, version in enumerate(applied):
                await self._scripts.queue(
                    pipe, "apikey_poll", [self._keys.api_key_revocations(p), self._keys.api_key_pollers(p)],
                    [self._process, version, ttl, self._lease_ms])
            replies = await pipe.execute()
        return [int(decode_result(raw, int)) for raw in replies]

    async def revoke_wait(self, partition: int, version: int) -> None:
        """Return once every serving process has applied ``version`` of the partition or
        no longer trusts its cached view (its record is older than the lease)."""
        if self._scripts is None:
            return
        deadline = time.monotonic() + 2 * self._lease_ms / 1000 + 1
        while True:
            behind = await self._scripts.call(
                "apikey_revoke_wait", [self._keys.api_key_pollers(partition)],
                [version, self._lease_ms], type=int)
            if behind == 0:
                return
            if time.monotonic() > deadline:
                raise Unavailable("The key is revoked, but serving processes did not confirm it "
                                  "in time; retry the revoke to wait again.")
            await asyncio.sleep(min(self._poll_s, 0.01))

    async def read_now(self, partition: int) -> int:
        """One read of its own (with a key lookup's pipeline, or outside a crowd)."""
        return int(await self._redis.get(self._keys.api_key_revocations(partition)) or 0)

    async def _run(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            while self._next and not self._stopping(me):
                batch, self._next = self._next, {}
                try:
                    if len(batch) == 1:
                        [p] = batch
                        values = [await self._redis.get(self._keys.api_key_revocations(p))]
                    else:
                        async with self._redis.pipeline(transaction=False) as pipe:
                            for p in batch:
                                pipe.get(self._keys.api_key_revocations(p))
                            values = await pipe.execute()
                except asyncio.CancelledError:
                    for waiters in batch.values():
                        for waiter in waiters:
                            waiter.cancel()
                    raise
                except Exception as exc:
                    for waiters in batch.values():
                        for waiter in waiters:
                            if not waiter.done():
                                waiter.set_exception(exc)
                                waiter.exception()  # retrieved: no warning when its caller left
                    continue
                for waiters, value in zip(batch.values(), values, strict=True):
                    version = int(value or 0)
                    for waiter in waiters:
                        if not waiter.done():  # a caller cancelled meanwhile
                            waiter.set_result(version)
        finally:
            self._task = None
            for waiters in self._next.values():  # cancelled mid-read: nobody waits forever
                for waiter in waiters:
                    if not waiter.done():
                        waiter.cancel()
            self._next = {}

    async def close(self) -> None:
        """Stop the poller and the batch reader (nothing starts them again) and remove
        this process's records, giving that at most a lease."""
        self._closed = True
        self._fresh_until = 0.0
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            try:  # a process that no longer serves need not be waited for
                async with asyncio.timeout(self._lease_ms / 1000):  # then its records are stale
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for p in range(self._keys.partitions):
                            pipe.hdel(self._keys.api_key_pollers(p), self._process)
                        await pipe.execute()
            except Exception as exc:
                log.debug("revocation records not removed: %r", exc)
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
