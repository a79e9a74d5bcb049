"""The persister when Redis goes away at the worst step, on real Redis.

After ``kill -9`` of Redis and its restart from the AOF (the fault lab's ``kill_redis``),
the persister once went on reading and acknowledging new entries, but left one batch
pending in the consumer group: delivered, never acknowledged, never delivered again.
``trim_log`` never trims past a pending entry, so the partition's log grew to
``max_backlog`` and every write answered 503, while the persister, idle, logged nothing.
Two ways in, each cut here at the exact command (the connection 'dies' there):

- the XACK after a commit fails, and the XACK of the replay fails again (Redis still
  down): the batch was dropped from memory (with the other partitions' batches of the
  same read);
- Redis runs an XREADGROUP and the reply is lost with the connection: the entries are
  pending under this persister's name but it never saw them.

Those entries must be applied before anything newer: claimed back a lease later, they
came after newer batches had moved the committed offset past them, were taken for
replays and acknowledged unapplied (the fault lab's kill -9 of Redis under
``appendfsync always``: 7 redemptions and 4 purchase changes never reached PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import redis.exceptions

from dropgate.engine.events import Event, parse_stream_id
from dropgate.engine.keys import partition_of
from dropgate.ids import text
from dropgate.persistence.persister import GROUP, Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.persistence.test_persister import _assert_pg_equals_redis, _load, _setup


class _Cut:
    """A Redis client whose connection is cut at chosen commands: before the command
    reaches Redis (``before``), or after Redis ran it, the reply lost (``after``);
    each name as many times as it is listed. With ``touching``, only a command whose
    streams (a dict argument, as XREADGROUP's) include that key is cut: on a cluster the
    reads of several partitions race, and the test names the one it cuts."""

    def __init__(self, client: Any, *, before: Iterable[str] = (), after: Iterable[str] = (),
                 touching: str | None = None, spare: int = 0) -> None:
        self._client = client
        self._before = Counter(before)
        self._after = Counter(after)
        self._touching = touching
        self._spare = spare  # the first commands named above that go through uncut
        self.cuts: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._client, name)
        if name not in self._before and name not in self._after:
            return command

        async def cut(*args: Any, **kwargs: Any) -> Any:
            if self._touching is not None and not any(
                    isinstance(a, dict) and self._touching in a for a in args):
                return await command(*args, **kwargs)
            if self._spare > 0:
                self._spare -= 1
                return await command(*args, **kwargs)
            if self._before[name] > 0:
                self._before[name] -= 1
                self.cuts.append(("before", name))
                raise redis.exceptions.ConnectionError(f"connection lost before {name}")
            result = await command(*args, **kwargs)
            if self._after[name] > 0:
                self._after[name] -= 1
                self.cuts.append(("after", name))
                raise redis.exceptions.ConnectionError(f"connection lost reading the reply of {name}")
            return result
        return cut


def _persister(runtime: Runtime, settings: Settings, cut: _Cut) -> Persister:
    persister = Persister(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys,
                          scripts=runtime.scripts, settings=settings, name="cut")
    persister._redis = cut  # type: ignore[assignment]  # its own commands only, not the scripts'
    return persister


async def _pending(runtime: Runtime, group: str = GROUP) -> int:
    """Entries delivered to ``group`` and not acknowledged, over every partition log."""
    total = 0
    for p in range(runtime.keys.partitions):
        if await runtime.redis.exists(runtime.keys.log(p)):
            total += int((await runtime.redis.xpending(runtime.keys.log(p), group))["pending"])
    return total


async def test_redis_gone_at_the_ack_and_again_at_the_replays_ack_keeps_the_batch(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    invites = await _setup(runtime)
    assert await _load(invites, 0, 300) == 300
    cut = _Cut(runtime.redis, before=["xack", "xack"])
    # A lease of 10 s: nothing is claimed back within the drain's 5 s, so only a batch
    # kept in memory through both failures can drain the log.
    persister = _persister(runtime, make_settings(persister_lease_ms=10_000), cut)
    await persister.drain(timeout_s=5)
    assert cut.cuts == [("before", "xack")] * 2
    assert persister.stats.skipped_replays > 0  # the committed batch came back as replays
    assert persister.stats.reclaimed == 0
    assert await _pending(runtime) == 0
    await _assert_pg_equals_redis(runtime)


@pytest.mark.cluster
@pytest.mark.parametrize("writes_after", [False, True], ids=["alone", "newer-writes-after"])
async def test_a_read_whose_reply_is_lost_is_claimed_back_in_log_order(
        runtime: Runtime, make_settings: Callable[..., Settings], writes_after: bool) -> None:
    """Claimed back, and applied before the writes that came after it: with newer
    entries committed first, the lost read's were once taken for replays."""
    invites = await _setup(runtime)
    assert await _load(invites, 0, 300) == 300
    # t1's partition, which has entries: on a cluster the other partitions' reads work
    # and are held to be applied next pass, so only the cut one is claimed back.
    t1_log = runtime.keys.log(partition_of("t1", runtime.keys.partitions))
    cut = _Cut(runtime.redis, after=["xreadgroup"], touching=t1_log)
    persister = _persister(runtime, make_settings(persister_lease_ms=300), cut)
    if writes_after:
        with pytest.raises(redis.exceptions.ConnectionError):
            await persister.run_once()
        assert await _load(invites, 300, 300) == 300  # newer entries behind the lost read's
    await persister.drain(timeout_s=20)
    assert cut.cuts == [("after", "xreadgroup")]
    assert persister.stats.reclaimed > 0  # delivered by the lost read, then claimed back
    assert persister.stats.skipped_replays == 0  # nothing taken for a replay ...
    assert await _pending(runtime) == 0
    await _assert_pg_equals_redis(runtime)  # ... and nothing left out


@pytest.mark.cluster
async def test_the_reads_that_worked_beside_a_lost_one_are_applied_without_waiting_a_lease(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    """On a cluster each partition is read by its own XREADGROUP; one reply lost must not
    strand the others' entries (pending under this name, never offered again) until a
    claim-back a lease later. On one server a single read covers every partition."""
    invites = await _setup(runtime)
    assert await _load(invites, 0, 300) == 300
    lengths = {p: int(await runtime.redis.xlen(runtime.keys.log(p)))
               for p in range(runtime.keys.partitions)}
    t1 = partition_of("t1", runtime.keys.partitions)
    cut = _Cut(runtime.redis, after=["xreadgroup"], touching=runtime.keys.log(t1))
    persister = _persister(runtime, make_settings(persister_lease_ms=60_000), cut)
    with pytest.raises(redis.exceptions.ConnectionError):
        await persister.run_once()
    lost = lengths[t1] if persister._cluster else sum(lengths.values())
    # The next pass takes the lost read's entries back and applies them with the rest.
    assert await persister.run_once() == sum(lengths.values())
    assert persister.stats.reclaimed == lost
    assert await _pending(runtime) == 0


class _HangsOnce(Persister):
    """Its first commit awaits something that never comes (a connection that never
    answers, a pool that never hands out a connection)."""

    hung = False

    @property
    def stall_after_s(self) -> float:
        return 1.0

    async def _commit(self, p: int, events: list[Event[Any]], *,
                      dead_letter: tuple[str, int] | None = None) -> None:
        if not self.hung:
            self.hung = True
            await asyncio.Event().wait()
        await super()._commit(p, events, dead_letter=dead_letter)


async def test_an_iteration_that_never_returns_is_restarted_with_its_batch(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    invites = await _setup(runtime)
    assert await _load(invites, 0, 300) == 300
    persister = _HangsOnce(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys,
                           scripts=runtime.scripts, settings=make_settings(), name="hangs")
    task = asyncio.create_task(persister.run())
    deadline = time.monotonic() + 30
    while sum((await persister.lag()).values()) or any(persister._retry.values()):
        assert time.monotonic() < deadline, (persister.stats, await persister.lag())
        await asyncio.sleep(0.05)
    await persister.close()
    await task
    assert persister.hung and persister.stats.stalls == 1
    assert await _pending(runtime) == 0
    await _assert_pg_equals_redis(runtime)


class _Commits(Persister):
    """Records each batch it commits, and fails the ``fail``-th commit (PostgreSQL gone):
    at ``_close``, the step every batch ends with, one at a time or pipelined."""

    fail = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed: dict[int, list[tuple[int, int]]] = {}
        self.calls = 0

    async def _close(self, p: int, batch: Any) -> None:
        self.calls += 1
        if self.calls == self.fail:
            await asyncio.sleep(0.05)  # the read-ahead beside it is done by then
            gone = OSError("PostgreSQL gone")
            await batch.discard(gone)
            raise gone
        await super()._close(p, batch)
        self.committed.setdefault(p, []).extend(e.position for e in batch.events)


async def _log_positions(runtime: Runtime) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for p in range(runtime.keys.partitions):
        ids = [text(eid) for eid, _ in await runtime.redis.xrange(runtime.keys.log(p))]
        if ids:
            out[p] = [parse_stream_id(i) for i in ids]
    return out


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "one-read-at-a-time"])
async def test_a_backlog_read_ahead_commits_every_entry_once_in_log_order(
        runtime: Runtime, make_settings: Callable[..., Settings], read_ahead: bool) -> None:
    """While a full batch is applied its partition's next one is read: every entry is
    committed exactly once, each partition's in log order, as one read at a time does."""
    invites = await _setup(runtime)
    assert await _load(invites, 0, 600) == 600
    expected = await _log_positions(runtime)
    persister = _Commits(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys, scripts=runtime.scripts,
                         settings=make_settings(persister_batch_size=25, persister_read_ahead=read_ahead),
                         name="ahead")
    await persister.drain(timeout_s=30)
    assert persister.committed == expected
    assert (persister.stats.read_ahead > 0) is read_ahead
    assert persister.stats.skipped_replays == 0
    assert await _pending(runtime) == 0
    await _assert_pg_equals_redis(runtime)


async def test_a_read_ahead_whose_reply_is_lost_while_its_batch_fails_loses_nothing(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    """The worst pair: the batch being applied fails (held to retry) and the read beside it
    ran in Redis with its reply lost (delivered, pending, never seen). Both are taken back
    from the group in log order and applied before anything newer; left as they were, newer
    batches would commit past the lost entries, which then count as replays, unapplied."""
    invites = await _setup(runtime)
    assert await _load(invites, 0, 300) == 300
    before = await _log_positions(runtime)
    cut = _Cut(runtime.redis, after=["xreadgroup"], spare=1)  # the first read works, the next is cut
    persister = _Commits(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys, scripts=runtime.scripts,
                         settings=make_settings(persister_batch_size=25, persister_lease_ms=60_000),
                         name="ahead-cut")
    persister._redis = cut  # type: ignore[assignment]
    persister.fail = 1
    with pytest.raises((redis.exceptions.ConnectionError, OSError)):
        await persister.run_once()
    assert cut.cuts == [("after", "xreadgroup")]
    assert await _load(invites, 300, 300) == 300  # newer entries behind the lost read's
    after = await _log_positions(runtime)  # what the first pass committed is trimmed from it
    expected = {p: sorted(set(before.get(p, [])) | set(after.get(p, []))) for p in before.keys() | after.keys()}
    await persister.drain(timeout_s=30)
    assert persister.stats.reclaimed > 0  # the lost read's entries and the failed batch's, taken back
    assert persister.stats.skipped_replays == 0  # nothing taken for a replay ...
    assert persister.committed == expected  # ... each entry once, in log order
    assert await _pending(runtime) == 0
    await _assert_pg_equals_redis(runtime)
