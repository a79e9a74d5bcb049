"""Restore brings back each campaign's ``uploads`` counter, the number the next upload
of several batches takes (``codes_upload``). PostgreSQL records the numbers on the
staged rows (``campaign_codes.upload``) and the uploads still pending
(``campaign_pending_uploads``); a restore that forgot the counter started again at 1,
so a new upload took the number of an old one:

- its discard deleted the old upload's rows in PostgreSQL (``upload = n``), which
  Redis still serves: the stores disagree;
- its commit deleted the pending row of an upload left staged when Redis was lost,
  and made that upload's rows visible as if it had been committed.

(A restore now also discards an upload left pending: test_staged_uploads.py; its
number stays taken all the same.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dropgate.errors import Conflict
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.persistence.test_reconcile import _drained

T = "upl"
C = "drop"


async def _file(*codes: str) -> AsyncIterator[bytes]:
    yield ("\n".join(codes) + "\n").encode()


async def _upload(runtime: Runtime, *codes: str) -> None:
    """An upload of several batches (two codes a batch): staged, numbered, committed."""
    await runtime.codes.upload(T, C, "gold", _file(*codes), batch_size=2)


async def _numbers(runtime: Runtime) -> dict[str, int | None]:
    rows = await runtime.pool.fetch(
        "SELECT code, upload FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2", T, C)
    return {r["code"]: r["upload"] for r in rows}


async def _pending_uploads(runtime: Runtime) -> list[int]:
    return [r["upload"] for r in await runtime.pool.fetch(
        "SELECT upload FROM campaign_pending_uploads WHERE tenant_id = $1 AND campaign_id = $2 ORDER BY 1",
        T, C)]


async def _wipe_tenant(runtime: Runtime) -> None:
    tk = runtime.keys.tenant(T)
    lost = [k async for k in runtime.redis.scan_iter(match=f"{tk.tag}:t:{T}:*")] + [tk.tenant()]
    assert tk.codes_meta(C) in {k.decode() if isinstance(k, bytes) else k for k in lost}
    await runtime.redis.delete(*lost)


async def _counter(runtime: Runtime) -> bytes | None:
    counter: bytes | None = await runtime.redis.hget(runtime.keys.tenant(T).codes_meta(C), "uploads")
    return counter


@pytest.mark.cluster
async def test_restore_keeps_upload_numbers_fresh(runtime: Runtime, persister: Persister) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    codes = runtime.codes
    await codes.upload_batch(T, C, "silver", ["S1"])  # one batch: no number
    await codes.upload_batch(T, C, "gold", ["G1"])
    await _upload(runtime, "A1", "A2", "A3")  # upload 1, committed
    # upload 2: its first batch staged, then Redis was lost with the process driving it
    await codes.upload_batch(T, C, "gold", ["B1", "B2"], upload_id="lost", final=False, staged=True)
    await _drained(persister)
    before = await _numbers(runtime)
    assert before == {"S1": None, "G1": None, "A1": 1, "A2": 1, "A3": 1, "B1": 2, "B2": 2}
    assert await _pending_uploads(runtime) == [2]
    assert await _counter(runtime) == b"2"

    await _wipe_tenant(runtime)
    await restore(runtime, tenant_id=T)
    assert await _counter(runtime) == b"2"
    # upload 2 could never commit (its staging was in the lost Redis): discarded
    del before["B1"], before["B2"]
    assert await _numbers(runtime) == before
    assert await _pending_uploads(runtime) == []

    # upload 3 is refused at its second batch (S1 is a silver code) and discarded: only
    # its own staged codes go (as number 1 it took upload 1's rows out of PostgreSQL)
    with pytest.raises(Conflict):
        await _upload(runtime, "N1", "N2", "S1")
    # upload 4 is committed (as number 2 it took upload 2's rows, making them live)
    await _upload(runtime, "D1", "D2", "D3")
    assert await _counter(runtime) == b"4"
    await _drained(runtime.new_persister(name="after-restore"))
    assert await _numbers(runtime) == {**before, "D1": 4, "D2": 4, "D3": 4}
    assert await _pending_uploads(runtime) == []
    assert (await codes.count(T, C, "gold")).available == 1 + 3 + 3  # G, A, D
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def test_reconcile_finds_and_repairs_a_lost_upload_counter(runtime: Runtime, persister: Persister) -> None:
    """A Redis restored before the counter was (or a counter lost otherwise): reconcile
    reports it, and its repair sets it again, leaving the pool as it was."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await _upload(runtime, "A1", "A2", "A3")
    await _upload(runtime, "B1", "B2", "B3")
    await _drained(persister)
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0
    await runtime.redis.hdel(runtime.keys.tenant(T).codes_meta(C), "uploads")

    found = await reconcile(runtime, wait_s=0, tenant_id=T)
    assert found.exit_code == 1
    assert [(d.field, d.problem, d.redis, d.postgres) for d in found.drifts] == [
        ("uploads", "redis_behind", 0, 2)]
    repaired = await reconcile(runtime, wait_s=0, tenant_id=T, repair=True)
    assert [(r.entity, r.action) for r in repaired.repairs] == [(f"codes:{T}:{C}", "restored")]
    assert await _counter(runtime) == b"2"
    assert (await runtime.codes.count(T, C, "gold")).available == 3 + 3
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0
