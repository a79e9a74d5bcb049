"""A staged upload whose server died mid-way is discarded by reconcile --repair (#21).

The crash is simulated: the upload's driver is cancelled with its discard disabled (a
killed process runs none), then its staged and seen sets are deleted as their TTL
would. Reconcile must report the upload as abandoned (not as counter drift), repair
must discard it (records, pending mark; PostgreSQL's rows and pending row through
``codes.discarded``), and the same codes must upload again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from dropgate.engine.abandoned import discard_abandoned
from dropgate.errors import UnknownType
from dropgate.http.listspecs import NOT_PENDING
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from dropgate.settings import ConfigError, from_env
from tests.persistence.test_reconcile import _drained
from tests.persistence.test_restore_uploads import _pending_uploads, _wipe_tenant
from tests.persistence.test_staged_uploads import C, T, _Paused, _reservable, _rows, _start


async def _crash(runtime: Runtime, file: _Paused, monkeypatch: pytest.MonkeyPatch) -> str:
    """Stage the first batch, then die: no discard; the staging expires. The upload id."""
    upload = await _start(runtime, file)

    async def no_discard(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(runtime.codes, "_discard", no_discard)
    upload.cancel()
    await asyncio.gather(upload, return_exceptions=True)
    tk = runtime.keys.tenant(T)
    raw = await runtime.redis.hget(tk.codes_meta(C), "p:1")
    assert raw is not None
    return raw.decode()


async def test_repair_discards_an_abandoned_upload(runtime: Runtime, persister: Persister,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.codes.upload_batch(T, C, "gold", ["G1", "G2"])
    file = _Paused(["A1", "A2", "A3"], ["A4"])
    upload_id = await _crash(runtime, file, monkeypatch)
    await _drained(persister)
    tk = runtime.keys.tenant(T)
    assert await _rows(runtime) == {"G1": None, "G2": None, "A1": 1, "A2": 1}
    assert await _pending_uploads(runtime) == [1]

    # still staging (its sets alive): neither a drift nor anything to discard
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0
    assert await discard_abandoned(runtime.redis, runtime.scripts, tk, T, C) == {}
    assert await runtime.redis.hexists(tk.codes_records(C), "A1")

    # the TTL runs out
    staged = tk.codes_staged(C, upload_id, "gold")
    assert await runtime.redis.scard(staged) == 2
    await runtime.redis.delete(staged, tk.codes_upload(C, upload_id))

    found = await reconcile(runtime, wait_s=0, tenant_id=T)
    assert [(d.field, d.problem, d.redis) for d in found.drifts] == [("upload:1", "abandoned", 2)]
    assert found.exit_code != 0
    repaired = await reconcile(runtime, wait_s=0, tenant_id=T, repair=True)
    # (the repair run then replays the log it appended to: the discard event)
    assert [(r.action, r.entity) for r in repaired.repairs if r.domain == "codes"] == [
        ("discarded", f"codes:{T}:{C}")]
    assert await runtime.redis.hmget(tk.codes_records(C), ["A1", "A2", "G1"]) == [None, None, b"gold|a"]
    assert await runtime.redis.hget(tk.codes_meta(C), "p:1") is None
    assert await _reservable(runtime) == ["G1", "G2"]

    await _drained(runtime.new_persister(name="after-abandon"))
    assert await _rows(runtime) == {"G1": None, "G2": None}
    assert await _pending_uploads(runtime) == []
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0

    # the same codes uploaded again: live, under a fresh number
    async def again() -> AsyncIterator[bytes]:
        yield b"A1\nA2\nA3\nA4\n"
    result = await runtime.codes.upload(T, C, "gold", again(), batch_size=2)
    assert result.inserted == 4
    assert await _reservable(runtime) == ["A1", "A2", "A3", "A4", "G1", "G2"]
    await _drained(runtime.new_persister(name="after-again"))
    assert await _rows(runtime) == {"G1": None, "G2": None, "A1": 2, "A2": 2, "A3": 2, "A4": 2}
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def test_discard_keeps_a_type_already_committed(runtime: Runtime, persister: Persister) -> None:
    """A code of the upload that is live (its type committed) is never removed, and an
    upload not pending under that id is refused outright."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    tk = runtime.keys.tenant(T)
    await runtime.codes.upload_batch(T, C, "gold", ["L1"], upload_id="u1", final=False, staged=True)
    await runtime.redis.hset(tk.codes_records(C), "L1", "gold|a#1")
    await runtime.redis.sadd(tk.codes_available(C, "gold"), "L1")  # as a commit of gold would
    await runtime.redis.hset(tk.codes_records(C), "S1", "gold|a#1")
    await runtime.redis.delete(tk.codes_staged(C, "u1", "gold"), tk.codes_upload(C, "u1"))
    keys = [tk.log, tk.codes_meta(C), tk.codes_records(C), tk.codes_available(C, "gold"),
            tk.codes_staged(C, "u1", "gold"), tk.codes_upload(C, "u1")]
    refused = await runtime.scripts.call("codes_abandon", keys, [T, C, "gold", 1, "other", "1", "S1"])
    assert refused == {"removed": 0, "abandoned": False}
    assert await discard_abandoned(runtime.redis, runtime.scripts, tk, T, C) == {1: 1}
    assert await runtime.redis.hmget(tk.codes_records(C), ["L1", "S1"]) == [b"gold|a#1", None]
    assert await runtime.redis.hget(tk.codes_meta(C), "p:1") is None


async def test_the_sweeper_discards_an_abandoned_upload(runtime: Runtime, persister: Persister,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an operator: the runtime's sweeper finds the upload by its pending row."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await runtime.codes.upload_batch(T, C, "gold", ["G1"])
    file = _Paused(["A1", "A2", "A3"], ["A4"])
    upload_id = await _crash(runtime, file, monkeypatch)
    await _drained(persister)
    sweeper = runtime.new_upload_sweeper()
    assert await sweeper.run_once() == {}  # still staging: left alone
    tk = runtime.keys.tenant(T)
    await runtime.redis.delete(tk.codes_staged(C, upload_id, "gold"), tk.codes_upload(C, upload_id))
    assert await sweeper.run_once() == {}  # abandoned once: a suspect
    assert await runtime.redis.hexists(tk.codes_records(C), "A1")
    assert await sweeper.run_once() == {(T, C, 1): 2}  # still so a pass later: discarded
    assert await sweeper.run_once() == {}  # done once (its pending row goes with the event)
    assert await _reservable(runtime) == ["G1"]
    await _drained(runtime.new_persister(name="after-sweep"))
    assert await _rows(runtime) == {"G1": None}
    assert await _pending_uploads(runtime) == []
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0


async def test_killed_between_two_commits(runtime: Runtime, persister: Persister,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A two-type upload killed after its first type committed: that type stays live;
    the rest is discarded, and the repair rounds leave both stores agreeing."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await _killed_after_first_commit(runtime, monkeypatch)
    codes = runtime.codes
    tk = runtime.keys.tenant(T)
    await _drained(persister)

    found = await reconcile(runtime, wait_s=0, tenant_id=T)
    assert [(d.field, d.problem) for d in found.drifts] == [("upload:1", "abandoned")]
    await reconcile(runtime, wait_s=0, tenant_id=T, repair=True)
    got = await codes.reserve(T, C, "bronze", 10)
    assert sorted(got.codes) == ["B1", "B2"]
    await codes.release(T, C, got.codes)
    with pytest.raises(UnknownType):  # silver never committed: not a type of the pool
        await codes.reserve(T, C, "silver", 10)
    assert await runtime.redis.hmget(tk.codes_records(C), ["S1", "S2", "S3"]) == [None, None, None]
    assert (await reconcile(runtime, wait_s=0, tenant_id=T)).exit_code == 0
    assert set(await _rows(runtime)) == {"B1", "B2"}


async def _killed_after_first_commit(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bronze + silver upload whose server dies after bronze committed, before silver
    did; its staging then expires. The upload id."""
    codes = runtime.codes
    commit = codes._commit
    stuck = asyncio.Event()

    async def commit_then_die(*args: object, last: bool = True) -> None:
        if last:
            stuck.set()
            await asyncio.Event().wait()  # killed here: the last type never commits
        await commit(*args, last=last)  # type: ignore[arg-type]

    async def no_discard(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(codes, "_commit", commit_then_die)
    monkeypatch.setattr(codes, "_discard", no_discard)

    async def file() -> AsyncIterator[bytes]:
        yield b"code,type\nB1,bronze\nB2,bronze\nS1,silver\nS2,silver\nS3,silver\n"
    upload = asyncio.create_task(codes.upload(T, C, None, file(), batch_size=2))
    await asyncio.wait_for(stuck.wait(), 10)
    upload.cancel()
    await asyncio.gather(upload, return_exceptions=True)
    tk = runtime.keys.tenant(T)
    raw = await runtime.redis.hget(tk.codes_meta(C), "p:1")
    assert raw is not None
    upload_id: str = raw.decode()
    await runtime.redis.delete(tk.codes_staged(C, upload_id, "silver"), tk.codes_upload(C, upload_id))
    return upload_id


async def _stores_agree(runtime: Runtime) -> dict[str, str]:
    """PostgreSQL's rows (code -> type) once they equal Redis's records; reconcile agrees."""
    records = await runtime.redis.hgetall(runtime.keys.tenant(T).codes_records(C))
    in_redis = {k.decode(): v.decode().partition("|")[0] for k, v in records.items()}
    rows = await runtime.pool.fetch(
        "SELECT code, type FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2", T, C)
    in_postgres = {r["code"]: r["type"] for r in rows}
    assert in_postgres == in_redis
    found = await reconcile(runtime, wait_s=0, tenant_id=T)
    assert [d.detail for d in found.drifts] == []
    assert found.exit_code == 0
    return in_postgres


async def test_repair_keeps_the_committed_type_in_postgres(runtime: Runtime, persister: Persister,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between two commits, discarded by reconcile --repair: once the persister
    applied the discard, PostgreSQL still holds the committed type's rows (Redis serves
    them), and only the uncommitted type's rows went."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await _killed_after_first_commit(runtime, monkeypatch)
    await _drained(persister)
    assert await _pending_uploads(runtime) == [1]  # silver never committed: still pending
    repaired = await reconcile(runtime, wait_s=0, tenant_id=T, repair=True)
    # the discard alone: no later round has to re-emit rows the discard deleted
    assert [(r.action, r.entity) for r in repaired.repairs if r.domain == "codes"] == [
        ("discarded", f"codes:{T}:{C}")]
    await _drained(runtime.new_persister(name="after-repair"))
    assert await _pending_uploads(runtime) == []
    assert await _stores_agree(runtime) == {"B1": "bronze", "B2": "bronze"}
    got = await runtime.codes.reserve(T, C, "bronze", 10)
    assert sorted(got.codes) == ["B1", "B2"]


async def test_the_sweeper_keeps_the_committed_type_in_postgres(
        runtime: Runtime, persister: Persister, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same without an operator: the sweeper finds the upload by its pending row
    (kept until the last type commits) and discards only what never went live."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await _killed_after_first_commit(runtime, monkeypatch)
    await _drained(persister)
    # listed meanwhile: the committed type (live in Redis), not the staged one
    listed = await runtime.pool.fetch(
        f"SELECT code FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2 AND {NOT_PENDING}"
        " ORDER BY code", T, C)
    assert [r["code"] for r in listed] == ["B1", "B2"]
    sweeper = runtime.new_upload_sweeper()
    assert await sweeper.run_once() == {}  # a suspect first
    assert await sweeper.run_once() == {(T, C, 1): 3}
    await _drained(runtime.new_persister(name="after-sweep"))
    assert await _pending_uploads(runtime) == []
    assert await _stores_agree(runtime) == {"B1": "bronze", "B2": "bronze"}


async def test_a_refusal_between_two_commits_keeps_the_committed_type(
        runtime: Runtime, persister: Persister, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live server whose second commit fails discards the rest (``codes_discard``):
    the committed type stays in PostgreSQL too."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    codes = runtime.codes
    commit = codes._commit

    async def second_fails(*args: object, last: bool = True) -> None:
        if last:
            raise ConnectionError("Redis went away")
        await commit(*args, last=last)  # type: ignore[arg-type]

    monkeypatch.setattr(codes, "_commit", second_fails)

    async def file() -> AsyncIterator[bytes]:
        yield b"code,type\nB1,bronze\nB2,bronze\nS1,silver\nS2,silver\nS3,silver\n"
    with pytest.raises(ConnectionError):
        await codes.upload(T, C, None, file(), batch_size=2)
    assert await runtime.redis.hget(runtime.keys.tenant(T).codes_meta(C), "p:1") is None
    await _drained(persister)
    assert await _pending_uploads(runtime) == []
    assert await _stores_agree(runtime) == {"B1": "bronze", "B2": "bronze"}



async def test_restore_keeps_the_committed_type_of_a_pending_upload(
        runtime: Runtime, persister: Persister, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis lost while the upload is stopped between two commits: the restore brings the
    committed type back into the pool (it was live) and drops only the other's rows."""
    await runtime.tenants.create(T, name=T, status="active", trial_end_ms=None)
    await _killed_after_first_commit(runtime, monkeypatch)
    await _drained(persister)
    assert await _pending_uploads(runtime) == [1]
    await _wipe_tenant(runtime)
    await restore(runtime, tenant_id=T)
    assert await _pending_uploads(runtime) == []
    assert await _stores_agree(runtime) == {"B1": "bronze", "B2": "bronze"}
    got = await runtime.codes.reserve(T, C, "bronze", 10)
    assert sorted(got.codes) == ["B1", "B2"]
    with pytest.raises(UnknownType):
        await runtime.codes.reserve(T, C, "silver", 10)


@pytest.mark.parametrize("value", ["0", "0.5", "-3", "abc", "inf", "nan", "86401"])
def test_the_sweep_interval_setting_refuses_a_bad_value(value: str) -> None:
    with pytest.raises(ConfigError) as bad:
        from_env({"DROPGATE_UPLOAD_SWEEPER_INTERVAL_S": value})
    assert str(bad.value) == (f"DROPGATE_UPLOAD_SWEEPER_INTERVAL_S must be a number from 1 to 86400,"
                              f" got {value!r}")
    assert "\n" not in str(bad.value)


def test_the_sweep_interval_setting_reaches_the_sweeper() -> None:
    assert from_env({}).upload_sweeper_interval_s == 60.0
    settings = from_env({"DROPGATE_UPLOAD_SWEEPER_INTERVAL_S": "2.5"})
    assert settings.upload_sweeper_interval_s == 2.5


async def test_the_runtime_sweeper_runs_at_the_configured_interval(runtime: Runtime,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.new_upload_sweeper()._interval_s == 60.0
    monkeypatch.setattr(runtime, "settings",
                        msgspec.structs.replace(runtime.settings, upload_sweeper_interval_s=7.0))
    assert runtime.new_upload_sweeper()._interval_s == 7.0
