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
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from dropgate.engine.keys import Keys


class RevocationClock:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._next: dict[int, asyncio.Future[int]] = {}  # partitions asked since the last read began
        self._task: asyncio.Task[None] | None = None

    async def read(self, partition: int) -> int:
        """The partition's revocation version, read after this call began."""
        future = self._next.get(partition)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._next[partition] = future
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(future)

    async def read_now(self, partition: int) -> int:
        """One read of its own (with a key lookup's pipeline, or outside a crowd)."""
        return int(await self._redis.get(self._keys.api_key_revocations(partition)) or 0)

    async def _run(self) -> None:
        try:
            while self._next:
                batch, self._next = self._next, {}
                try:
                    if len(batch) == 1:
                        [p] = batch
                        values = [await self._redis.get(self._keys.api_key_revocations(p))]
                    else:
                        pipe = self._redis.pipeline(transaction=False)
                        for p in batch:
                            pipe.get(self._keys.api_key_revocations(p))
                        values = await pipe.execute()
                except asyncio.CancelledError:
                    for future in batch.values():
                        future.cancel()
                    raise
                except Exception as exc:
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: no warning when every waiter left
                    continue
                for future, value in zip(batch.values(), values, strict=True):
                    if not future.done():
                        future.set_result(int(value or 0))
        finally:
            self._task = None
            for future in self._next.values():  # cancelled mid-read: nobody waits forever
                if not future.done():
                    future.cancel()
            self._next = {}

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
