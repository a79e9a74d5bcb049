"""A hot partition's batches pipelined (#19): the next batch applied on a second connection while
the one before it commits, on real Redis and PostgreSQL.

What must hold whatever happens: every entry committed once, each partition's in log order, and
PostgreSQL equal to Redis after the drain. The crowds below are hundreds of simultaneous callers
on one tenant (so one partition) and one hot entity (so every batch touches the same counter row,
which the batch in flight waits on in PostgreSQL); the faults strike while a batch is open beside
a commit: that commit fails, or finds its lease gone, a batch fails on its data, the pass is
cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.errors import DropgateError
from dropgate.persistence import persister as persister_module
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.persistence.test_persister_lost_replies import _Commits, _log_positions, _pending

T = "hot"


class _Timeline(_Commits):
    """``_Commits`` that also records when each batch's statements ran and when its commit
    ran, to show that they overlapped (not merely that the pipeline's code was taken)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opens: list[tuple[float, float]] = []
        self.closes: list[tuple[float, float]] = []
        self.opening = 0  # batches whose statements were sent
        self.open_beside_failure: bool | None = None

    async def _open(self, p: int, events: list[Any], **kwargs: Any) -> Any:
        started = time.monotonic()
        self.opening += 1
        opened = await super()._open(p, events, **kwargs)
        self.opens.append((started, time.monotonic()))
        return opened

    async def _close(self, p: int, batch: Any) -> None:
        if self.calls + 1 == self.fail:
            await asyncio.sleep(0.05)  # the next batch's statements sent meanwhile, if pipelined
            # (they wait in PostgreSQL on this batch's lock of the code's counter row)
            self.open_beside_failure = self.opening > self.calls + 1
        started = time.monotonic()
        try:
            await super()._close(p, batch)
        finally:
            self.closes.append((started, time.monotonic()))

    def overlaps(self) -> int:
        """Batches whose statements ran while another batch's commit was running."""
        return sum(1 for o0, o1 in self.opens if any(c0 < o1 and o0 < c1 for c0, c1 in self.closes))


async def _hot_code(runtime: Runtime) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.invites.create(T, code="HOT", max_uses=0, expires_at_ms=None, active=True)


async def _invites_crowd(runtime: Runtime, start: int, count: int) -> None:
    """``count`` simultaneous redemptions of one tenant's unlimited code: one partition."""
    if start == 0:
        await _hot_code(runtime)
    await asyncio.gather(*(runtime.invites.redeem(T, "HOT", user_id=f"u{i}") for i in range(start, start + count)))


async def _assert_invites_agree(runtime: Runtime, users: int) -> None:
    members = {m.decode() for m in await runtime.redis.smembers(runtime.keys.tenant(T).invite_users("HOT"))}
    rows = [r["user_id"] for r in await runtime.pool.fetch("SELECT user_id FROM invite_code_uses")]
    assert len(members) == users
    assert sorted(rows) == sorted(members)
    used = await runtime.pool.fetchval("SELECT used_count FROM invite_codes WHERE code = 'HOT'")
    assert used == (await runtime.invites.get(T, "HOT")).used_count == users


def _persister(runtime: Runtime, settings: Settings, cls: type[Persister] = _Timeline) -> Any:
    return cls(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys, scripts=runtime.scripts,
               settings=settings, name="pipe")


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "one-batch-at-a-time"])
async def test_a_hot_partitions_backlog_commits_every_entry_once_in_log_order(
        runtime: Runtime, make_settings: Callable[..., Settings], pipeline: bool) -> None:
    await _invites_crowd(runtime, 0, 600)
    expected = await _log_positions(runtime)
    assert len(expected) == 1  # one tenant: one partition
    persister = _persister(runtime, make_settings(persister_batch_size=25, persister_pipeline=pipeline))
    await persister.drain(timeout_s=60)
    assert persister.committed == expected  # each entry once, in log order
    assert persister.stats.skipped_replays == 0
    assert await _pending(runtime) == 0
    if pipeline:
        assert persister.stats.pipelined > 10
        assert persister.overlaps() > 10  # statements ran while the batch before committed
    else:
        assert persister.stats.pipelined == 0 and persister.overlaps() == 0
    await _assert_invites_agree(runtime, 600)


async def test_a_crowd_on_one_offer_persists_exactly_what_redis_holds(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    """Holds, then payments and releases of some of them, all at once: a purchase's later version
    often lands in the batch after its hold (a shared key: that batch waits its turn), and every
    batch raises the same offer's counters."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.offers.create(T, offer_id="drop", event_id="ev", name="drop", price_minor=900, currency="usd",
                                total=400, max_per_order=3, expires_at_ms=None, active=True)

    async def hold(i: int) -> str | None:
        pid = new_purchase_id()
        [result] = await runtime.offers.purchase_batch(
            T, "drop", [HoldRequest(purchase_id=pid, user_id=f"u{i}", quantity=1 + i % 3)], [],
            hold_ttl_ms=600_000, rate_interval_ms=0, rate_burst=1000, idem_ttl_ms=600_000, idem_stale_ms=60_000)
        return pid if getattr(result, "ok", 0) == 1 else None

    held = [pid for pid in await asyncio.gather(*(hold(i) for i in range(400))) if pid]
    assert 0 < len(held) < 400  # sold out part of the way: the rest refused
    paid, released = held[::3], held[1::3]
    await asyncio.gather(
        *(runtime.offers.confirm(T, "drop", pid, event_id=f"evt-{pid}", session_id=f"cs_{pid}",
                                 payment_intent=f"pi_{pid}") for pid in paid),
        *(runtime.offers.release(T, "drop", pid, status="released") for pid in released))
    persister = _persister(runtime, make_settings(persister_batch_size=40))
    await persister.drain(timeout_s=60)
    assert persister.stats.pipelined > 0 and persister.overlaps() > 0
    assert await _pending(runtime) == 0
    state = await runtime.offers.read(T, "drop")
    row = await runtime.pool.fetchrow("SELECT reserved, sold, version FROM offers WHERE offer_id = 'drop'")
    assert tuple(row) == (state.reserved, state.sold, state.version)
    assert state.sold + state.reserved <= 400  # never oversold
    statuses = dict(await runtime.pool.fetch("SELECT status, count(*) FROM offer_purchases GROUP BY status"))
    assert statuses == {"paid": len(paid), "released": len(released),
                        "pending": len(held) - len(paid) - len(released)}
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


async def test_a_crowd_on_one_promo_code_persists_exactly_what_redis_holds(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.promos.create(T, code="LAUNCH", kind="fixed", value=300, currency="usd", max_uses=450)

    async def redeem(i: int) -> bool:
        try:
            await runtime.promos.redeem_minor(T, "LAUNCH", customer_id=f"c{i}", base_minor=1000 + i,
                                              currency="usd")
        except DropgateError:
            return False
        return True

    assert sum(await asyncio.gather(*(redeem(i) for i in range(600)))) == 450
    persister = _persister(runtime, make_settings(persister_batch_size=30))
    await persister.drain(timeout_s=60)
    assert persister.stats.pipelined > 0 and persister.overlaps() > 0
    state = await runtime.promos.get(T, "LAUNCH")
    row = await runtime.pool.fetchrow("SELECT times_used, total_bonus_issued, version FROM promo_codes")
    assert tuple(row) == (450, state.total_bonus_issued, state.version) and state.times_used == 450
    assert await runtime.pool.fetchval("SELECT count(DISTINCT use_id) FROM promo_code_uses") == 450
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


async def test_a_commit_that_fails_beside_an_open_batch_loses_and_repeats_nothing(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    """PostgreSQL goes away at the third commit while the fourth batch's statements have run:
    that batch is rolled back, and both, with the read beside them, are taken back in log order."""
    await _invites_crowd(runtime, 0, 400)
    expected = await _log_positions(runtime)
    persister = _persister(runtime, make_settings(persister_batch_size=25))
    persister.fail = 3
    await persister.drain(timeout_s=60)  # the failure is transient to it: retried
    assert persister.open_beside_failure is True
    assert persister.stats.last_error == "OSError('PostgreSQL gone')"
    assert persister.committed == expected
    assert persister.stats.skipped_replays == 0
    assert await _pending(runtime) == 0
    await _assert_invites_agree(runtime, 400)


class _LosesLease(_Timeline):
    """Its ``lose``-th commit finds the offset moved (a persister that lost its lease)."""

    lose = 0

    async def _close(self, p: int, batch: Any) -> None:
        if self.calls + 1 == self.lose:
            self.calls += 1
            await asyncio.sleep(0.05)
            self.open_beside_failure = self.opening > self.calls
            lost = persister_module._LeaseLost()
            await batch.discard(lost)
            raise lost
        await super()._close(p, batch)


async def test_a_lease_lost_at_a_commit_beside_an_open_batch_drops_both(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    await _invites_crowd(runtime, 0, 400)
    expected = await _log_positions(runtime)
    persister = _persister(runtime, make_settings(persister_batch_size=25), _LosesLease)
    persister.lose = 4
    await persister.drain(timeout_s=60)
    assert persister.open_beside_failure is True
    assert persister.committed == expected  # taken again from the group by the partition's holder
    assert persister.stats.skipped_replays == 0
    assert await _pending(runtime) == 0
    await _assert_invites_agree(runtime, 400)


async def test_a_poison_event_in_a_pipelined_run_is_dead_lettered_alone(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.offers.create(T, offer_id="a", event_id="drop", name="a", price_minor=500, currency="usd",
                                total=10_000, max_per_order=3, expires_at_ms=None, active=True)
    tk = runtime.keys.tenant(T)

    async def crowd(prefix: str) -> list[str]:
        ids = [new_purchase_id() for _ in range(150)]
        await asyncio.gather(*(runtime.offers.purchase_batch(
            T, "a", [HoldRequest(purchase_id=pid, user_id=f"{prefix}{i}", quantity=1)], [], hold_ttl_ms=600_000,
            rate_interval_ms=0, rate_burst=1000, idem_ttl_ms=600_000, idem_stale_ms=60_000)
            for i, pid in enumerate(ids)))
        return ids

    first = await crowd("x")
    # a real purchase event copied with a status the table's CHECK refuses: it decodes, and
    # fails only in PostgreSQL, inside a batch opened beside the previous one's commit
    _, fields = (await runtime.redis.xrevrange(tk.log, count=1))[0]
    record = msgspec.json.decode(fields[b"d"])
    record.update(purchase_id="pu_poison", status="bogus", user_id="poison")
    await runtime.redis.xadd(tk.log, {"t": "offer.purchase", "e": f"purchase:{T}:pu_poison", "v": "1",
                                      "d": msgspec.json.encode(record)})
    second = await crowd("y")
    persister = _persister(runtime, make_settings(persister_batch_size=25, persister_max_retries=1,
                                                  persister_retry_base_ms=0))
    await persister.drain(timeout_s=60)
    assert persister.stats.pipelined > 0 and persister.stats.dead_letters == 1
    assert [r["entity"] for r in await runtime.pool.fetch("SELECT entity FROM dg_dead_letters")] \
        == [f"purchase:{T}:pu_poison"]
    ids = {r["purchase_id"] for r in await runtime.pool.fetch("SELECT purchase_id FROM offer_purchases")}
    assert ids == set(first) | set(second)
    state = await runtime.offers.read(T, "a")
    assert tuple(await runtime.pool.fetchrow("SELECT reserved, sold FROM offers")) == (state.reserved, 0) == (300, 0)
    assert await _pending(runtime) == 0


class _StopsAtOpen(_Timeline):
    """Its ``stop``-th batch's statements wait until the pass is cancelled."""

    stop = 0
    stopped: asyncio.Event

    async def _open(self, p: int, events: list[Any], **kwargs: Any) -> Any:
        if self.opening + 1 == self.stop:
            self.stop = 0
            self.stopped.set()
            await asyncio.Event().wait()
        return await super()._open(p, events, **kwargs)


async def test_a_pass_cancelled_with_batches_in_flight_leaves_nothing_behind(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    await _hot_code(runtime)
    persister = _persister(runtime, make_settings(persister_batch_size=25), _StopsAtOpen)
    await persister.drain()  # the tenant and its code: the crowd's batches are all uses
    applied_before = await runtime.pool.fetchval("SELECT sum(applied_events) FROM dg_partition_offsets")
    await _invites_crowd(runtime, 1, 400)
    persister.stop, persister.stopped = persister.opening + 5, asyncio.Event()
    task = asyncio.create_task(persister.run_once())
    await asyncio.wait({task, asyncio.ensure_future(persister.stopped.wait())}, timeout=30,
                       return_when=asyncio.FIRST_COMPLETED)
    assert persister.stopped.is_set(), task
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert persister.stats.pipelined > 0
    await _invites_crowd(runtime, 401, 200)  # newer entries behind the ones taken back
    await persister.drain(timeout_s=60)
    assert await _pending(runtime) == 0
    await _assert_invites_agree(runtime, 600)
    applied = await runtime.pool.fetchval("SELECT sum(applied_events) FROM dg_partition_offsets")
    assert applied == applied_before + 600  # every use once


async def test_the_later_batch_waits_for_the_earlier_ones_end_before_the_counter_row(runtime: Runtime) -> None:
    """Migration 0020 on its own: a transaction naming another's advisory lock inserts its rows,
    then waits on that lock (not on the code's counter row, which the other holds) until the
    other commits; only then does its trigger count its use, from the row the other left."""
    await _hot_code(runtime)
    await _persister(runtime, runtime.settings).drain()
    key = 7_000_001
    insert = "INSERT INTO invite_code_uses (tenant_id, code, user_id, used_at) VALUES ($1, 'HOT', $2, now())"
    async with runtime.pool.acquire() as earlier, runtime.pool.acquire() as later:
        first = earlier.transaction()
        await first.start()
        await earlier.execute("SELECT pg_advisory_xact_lock($1)", key)
        await earlier.execute(insert, T, "early")  # its trigger holds the code's row now
        second = later.transaction()
        await second.start()
        await later.execute("SELECT set_config('dropgate.pipeline_after', $1, true)", str(key))
        inserting = asyncio.ensure_future(later.execute(insert, T, "late"))
        await asyncio.sleep(0.3)
        assert not inserting.done()
        waits = await runtime.pool.fetch("SELECT locktype FROM pg_locks WHERE NOT granted AND pid = $1",
                                         later.get_server_pid())
        assert [w["locktype"] for w in waits] == ["advisory"]
        await first.commit()
        await asyncio.wait_for(inserting, 10)
        await second.commit()
    assert await runtime.pool.fetchval("SELECT used_count FROM invite_codes WHERE code = 'HOT'") == 2
