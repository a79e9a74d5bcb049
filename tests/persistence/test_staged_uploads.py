"""Reconcile and restore while an upload of several batches is staged (#21).

A staged upload's new codes are recorded (``type|a#n``) but wait in its staged set, not
the available set, until it commits. Reconcile must count them as staged (no false
counter drift, nothing for a repair to make reservable); a restore, which replaces the
Redis that held the staging, must leave them out of the pool and discard the upload in
PostgreSQL, so nothing half uploaded goes live.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dropgate.engine.codes import UploadResult
from dropgate.errors import Conflict
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.persistence.test_reconcile import _drained
from tests.persistence.test_restore_uploads import _pending_uploads, _wipe_tenant

T = "upl"
C = "drop"


class _Paused:
    """A code file whose second part waits for ``go``: the upload stays staged meanwhile."""

    def __init__(self, first: list[str], rest: list[str]) -> None:
        self.first, self.rest = first, rest
        self.go = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield ("\n".join(self.first) + "\n").encode()
        await self.go.wait()
        yield ("\n".join(self.rest) + "\n").encode()


async def _start(runtime: Runtime, file: _Paused) -> asyncio.Task[UploadResult]:
    """Start the upload (two codes a batch) and wait until its first batch is staged."""
    task: asyncio.Task[UploadResult] = asyncio.create_task(
        runtime.codes.upload(T, C, "gold", file.chunks(), batch_size=2))
    records = runtime.keys.tenant(T).codes_records(C)
    for _ in range(500):
        if await runtime.redis.hexists(records, file.first[0]):
            break
        await asyncio.sleep(0.01)
    assert await runtime.redis.hexists(records, file.first[0])
    return task


async def _reservable(runtime: Runtime) -> list[str]:
    """Every code a reservation gets now (released again right after)."""
    got = await runtime.codes.reserve(T, C, "gold", 100)
    if got.codes:
        await runtime.codes.release(T, C, got.codes)
    return sorted(got.codes)


async def _rows(runtime: Runtime) -> dict[str, int | None]:
    rows = await runtime.pool.fetch(
        "SELECT code, upload FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2", T, C)
    return {r["code"]: r["upload"] for r in rows}


async def test_reconcile_and_repair_leave_a_staged_upload_staged(runtime: Runtime, persister: Persister) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.codes.upload_batch(T, C, "gold", ["G1", "G2"])
    file = _Paused(["A1", "A2", "A3"], ["A4", "A5"])
    upload = await _start(runtime, file)
    await _drained(persister)
    assert await _pending_uploads(runtime) == [1]

    found = await reconcile(runtime, wait_s=0, tenant_id=T)
    assert [d.detail for d in found.drifts] == []
    assert found.exit_code == 0
    repaired = await reconcile(runtime, wait_s=0, tenant_id=T, repair=True)
    assert repaired.repairs == []
    assert await _reservable(runtime) == ["G1", "G2"]  # none of the staged codes

    file.go.set()
    result = await upload
    assert result.inserted == 5
    assert await _reservable(runtime) == ["A1", "A2", "A3", "A4", "A5", "G1", "G2"]
    assert await runtime.redis.hget(runtime.keys.tenant(T).codes_meta(C), "p:1") is None
    await _drained(runtime.new_persister(name="after-commit"))
    assert await _pending_uploads(runtime) == []
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def test_reconcile_finds_a_staged_set_that_disagrees(runtime: Runtime, persister: Persister) -> None:
    """The staged counter check can fail: a staged code lost from its set is reported."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    file = _Paused(["A1", "A2", "A3", "A4", "A5"], ["A6"])
    upload = await _start(runtime, file)
    await _drained(persister)
    upload_id = (await runtime.redis.hget(runtime.keys.tenant(T).codes_meta(C), "p:1")).decode()
    await runtime.redis.srem(runtime.keys.tenant(T).codes_staged(C, upload_id, "gold"), "A1")
    found = await reconcile(runtime, wait_s=0, tenant_id=T)
    assert [(d.field, d.problem, d.redis) for d in found.drifts] == [("gold:staged:1", "counter", 3)]
    file.go.set()
    await upload


async def test_restore_discards_a_pending_upload(runtime: Runtime, persister: Persister) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.codes.upload_batch(T, C, "gold", ["G1"])
    file = _Paused(["A1", "A2", "A3"], ["A4"])
    upload = await _start(runtime, file)
    await _drained(persister)
    assert await _rows(runtime) == {"G1": None, "A1": 1, "A2": 1}
    assert await _pending_uploads(runtime) == [1]

    await _wipe_tenant(runtime)  # Redis lost, with the upload's staging
    await restore(runtime, tenant_id=T)
    assert await _reservable(runtime) == ["G1"]
    assert await _rows(runtime) == {"G1": None}  # the pending upload discarded in PostgreSQL
    assert await _pending_uploads(runtime) == []
    assert await runtime.redis.hget(runtime.keys.tenant(T).codes_meta(C), "uploads") == b"1"
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0

    # the upload's driver, still running, can stage no more and commit nothing
    file.go.set()
    with pytest.raises(Conflict):
        await upload
    assert await _reservable(runtime) == ["G1"]

    # the same codes uploaded again: live, under a fresh number
    async def again() -> AsyncIterator[bytes]:
        yield b"A1\nA2\nA3\nA4\n"
    await runtime.codes.upload(T, C, "gold", again(), batch_size=2)
    assert await _reservable(runtime) == ["A1", "A2", "A3", "A4", "G1"]
    await _drained(runtime.new_persister(name="after-restore"))
    assert await _rows(runtime) == {"G1": None, "A1": 2, "A2": 2, "A3": 2, "A4": 2}
    assert await _pending_uploads(runtime) == []
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def test_a_staged_campaign_is_created_when_its_first_batch_came(runtime: Runtime,
                                                                      persister: Persister) -> None:
    """A campaign a staged upload creates: PostgreSQL's created_at is Redis's created_ms
    (the first batch's time), not the time of the commit that made it visible."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    file = _Paused(["A1", "A2", "A3"], ["A4"])
    upload = await _start(runtime, file)
    await asyncio.sleep(0.05)  # the commit comes well after the campaign was created
    file.go.set()
    await upload
    await _drained(persister)
    await _assert_created_at_is_created_ms(runtime)
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def test_a_campaign_first_uploaded_after_a_discard_keeps_its_created_ms(
        runtime: Runtime, persister: Persister) -> None:
    """Redis's created_ms is the first batch ever (HSETNX), also one of an upload since
    discarded; the upload that then creates the campaign in PostgreSQL carries it."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)

    class Unreadable(_Paused):
        async def chunks(self) -> AsyncIterator[bytes]:
            yield ("\n".join(self.first) + "\n").encode()
            await self.go.wait()
            raise ValueError("the file could not be read to its end")

    file = Unreadable(["A1", "A2", "A3"], [])
    upload = await _start(runtime, file)  # its first batch staged: the campaign's created_ms
    meta = runtime.keys.tenant(T).codes_meta(C)
    first = await runtime.redis.hget(meta, "created_ms")
    await asyncio.sleep(0.05)
    file.go.set()
    with pytest.raises(ValueError):
        await upload
    await runtime.codes.upload_batch(T, C, "gold", ["G1"])
    assert await runtime.redis.hget(meta, "created_ms") == first
    await runtime.codes.upload_batch(T, C, "gold", ["G1"])
    await _drained(persister)
    assert await _rows(runtime) == {"G1": None}
    await _assert_created_at_is_created_ms(runtime)
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def _assert_created_at_is_created_ms(runtime: Runtime) -> None:
    """PostgreSQL's campaign created_at (ms) equals Redis's created_ms."""
    created = await runtime.redis.hget(runtime.keys.tenant(T).codes_meta(C), "created_ms")
    assert created is not None
    pg_ms = await runtime.pool.fetchval(
        "SELECT floor(extract(epoch FROM created_at) * 1000)::bigint FROM campaigns"
        " WHERE tenant_id = $1 AND campaign_id = $2", T, C)
    assert pg_ms == int(created)
