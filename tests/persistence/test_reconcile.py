"""Reconcile: agreement, in-flight events, hand-made drift found exactly and repaired."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

import msgspec
import pytest

from dropgate.cli.reconcile import format_table
from dropgate.embedded import Endpoints
from dropgate.errors import AlreadyUsed
from dropgate.persistence import database
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import context, reconcile
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings

TENANTS = ("t1", "t2")
CODES = ("A", "B", "C", "D")


async def _drained(persister: Persister) -> None:
    """Drain, then give the partitions up (as a stopped persister does)."""
    await persister.drain()
    await persister.close()
    await persister.run()


async def _drop(runtime: Runtime, users: int = 200) -> None:
    for t in TENANTS:
        await runtime.tenants.create(t, name=t, status="active", trial_end_ms=None)
        await runtime.api_keys.create(role="service", tenant_id=t)
        for c in CODES:
            await runtime.invites.create(t, code=c, max_uses=0 if c != "D" else 50, expires_at_ms=None, active=True)

    async def one(i: int) -> None:
        try:
            await runtime.invites.redeem(TENANTS[i % 2], CODES[i % 4], user_id=f"u{i}")
        except Exception:
            pass

    await asyncio.gather(*(one(i) for i in range(users)))


@pytest.mark.cluster
async def test_stores_agree_after_the_persister_drained(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.result == "agree", report.drifts
    assert report.exit_code == 0
    counts = {c.kind: c for c in report.counts}
    assert counts["invite"].checked == 8 and counts["invite"].members == 200
    assert counts["tenant"].checked == 2 and counts["apikey"].checked == 2


async def test_unpersisted_events_are_in_flight_not_drift(runtime: Runtime) -> None:
    await _drop(runtime)
    report = await reconcile(runtime, wait_s=0)
    assert report.result == "agree", report.drifts
    assert len(report.in_flight) == 2 + 2 + 8
    assert report.backlog > 0


@pytest.mark.cluster
async def test_hand_made_drift_is_found_exactly_and_repaired(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    tk = runtime.keys.tenant("t1")
    # 1. a use row deleted in PostgreSQL
    await runtime.pool.execute("DELETE FROM invite_code_uses WHERE tenant_id = 't1' AND code = 'A' AND user_id = 'u0'")
    # 2. a counter changed in PostgreSQL
    await runtime.pool.execute("UPDATE invite_codes SET used_count = 99 WHERE tenant_id = 't2' AND code = 'B'")
    # 3. a counter changed in Redis (by hand: the fault this test injects)
    await runtime.redis.hset(tk.invite("C"), "used_count", 7)
    # 4. a tenant's name changed in PostgreSQL
    await runtime.pool.execute("UPDATE tenants SET name = 'renamed' WHERE tenant_id = 't2'")
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 1
    found = {(d.entity, d.field, d.problem) for d in report.drifts}
    assert found == {
        ("invite:t1:A", "used_count", "differs"),
        ("invite:t1:A", "uses", "missing_in_postgres"),
        ("invite:t2:B", "used_count", "differs"),
        ("invite:t2:B", "used_count", "counter"),
        ("invite:t1:C", "used_count", "differs"),
        ("invite:t1:C", "used_count", "counter"),
        ("tenant:t2", "name", "differs"),
    }, report.drifts
    uses = next(d for d in report.drifts if d.field == "uses")
    assert uses.redis == ["u0"]

    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0, repaired.drifts
    assert repaired.drifts_before_repair
    actions = {(r.entity, r.action) for r in repaired.repairs}
    assert ("invite:t2:B", "recounted") in actions
    assert ("invite:t1:A", "reemitted") in actions
    assert ("invite:t1:C", "restored") in actions
    assert ("tenant:t2", "restored") in actions
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM invite_code_uses WHERE tenant_id = 't1' AND code = 'A' AND user_id = 'u0'") == 1
    assert (await runtime.tenants.get("t2")).name == "renamed"  # PostgreSQL wins at equal versions
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
    try:
        await runtime.invites.redeem("t1", "A", user_id="u0")
        raise AssertionError("u0 redeemed twice")
    except AlreadyUsed:
        pass


async def test_dead_letters_are_reported(runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    await _drop(runtime, users=20)
    tk = runtime.keys.tenant("t1")
    payload = {"tenant_id": "t1", "code": "GHOST", "user_id": "x", "used_count": 1, "at_ms": 1}
    await runtime.redis.xadd(tk.log, {"t": "invite.redeemed", "e": "invite:t1:GHOST", "v": "1",
                                      "d": msgspec.json.encode(payload)})
    persister = Persister(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys, scripts=runtime.scripts,
                          settings=make_settings(persister_max_retries=1), name="p")
    await _drained(persister)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0  # the stores agree: the poison event changed neither
    assert report.dead_letters == 1
    assert report.dead_letter_sample[0].entity == "invite:t1:GHOST"
    assert "dead letters: 1" in format_table(report)


def _cli_env(servers: Endpoints, settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env.update(DROPGATE_REDIS_URL=servers.redis_url, DROPGATE_DATABASE_URL=servers.database_url,
               DROPGATE_KEY_PREFIX=settings.key_prefix, DROPGATE_DATABASE_SCHEMA=settings.database_schema or "",
               DROPGATE_PARTITIONS=str(settings.partitions), DROPGATE_LOG_LEVEL="WARNING",
               DROPGATE_DATA_DIR=settings.data_dir)
    return env


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dropgate", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_exit_codes_table_and_json(runtime: Runtime, persister: Persister, servers: Endpoints,
                                             settings: Settings) -> None:
    await _drop(runtime, users=60)
    await _drained(persister)
    env = _cli_env(servers, settings)
    code, out, _ = await _cli(env, "reconcile")
    assert code == 0, out
    assert "invites" in out and "result: agree (exit 0)" in out
    await runtime.pool.execute("DELETE FROM invite_code_uses WHERE tenant_id = 't2' AND user_id = 'u1'")
    code, out, _ = await _cli(env, "reconcile", "--json", "--tenant", "t2", "--entity", "invite")
    assert code == 1
    report = json.loads(out)
    assert report["result"] == "drift"
    assert {(d["entity"], d["field"]) for d in report["drifts"]} == {
        ("invite:t2:B", "uses"), ("invite:t2:B", "used_count")}
    code, out, err = await _cli(env, "reconcile", "--repair")
    assert code == 0, out + err
    assert "repairs: reemitted 1" in out and "repair invites invite:t2:B: reemitted" in err
    code, _, err = await _cli(env, "restore")
    assert code == 1 and "refused" in err
    code, out, _ = await _cli({**env, "DROPGATE_REDIS_URL": "redis://127.0.0.1:1/0"}, "reconcile", "--json")
    assert code == 2 and json.loads(out)["result"] == "error"


async def test_a_tenants_run_and_api_keys_changed_in_postgres(runtime: Runtime, persister: Persister) -> None:
    await _drop(runtime)
    await _drained(persister)
    kid = await runtime.pool.fetchval("SELECT key_id FROM api_keys WHERE tenant_id = 't1'")
    report = await reconcile(runtime, tenant_id="t1", wait_s=0)
    assert report.exit_code == 0, report.drifts
    counts = {c.kind: c.checked for c in report.counts}
    assert counts["apikey"] == 1 and counts["tenant"] == 1 and counts["invite"] == 4
    await runtime.pool.execute("UPDATE api_keys SET role = 'admin' WHERE key_id = $1", kid)
    report = await reconcile(runtime, entities=[f"apikey:{kid}"], wait_s=0)
    assert {(d.entity, d.field, d.problem) for d in report.drifts} == {(f"apikey:{kid}", "role", "differs")}
    assert "secret" not in msgspec.json.encode(report).decode()
    repaired = await reconcile(runtime, tenant_id="t1", repair=True, wait_s=0)
    assert repaired.exit_code == 0
    assert {(r.entity, r.action) for r in repaired.repairs} == {(f"apikey:{kid}", "restored")}
    await runtime.pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", kid)
    repaired = await reconcile(runtime, repair=True, wait_s=0)
    assert repaired.exit_code == 0 and (f"apikey:{kid}", "deleted_from_redis") in {
        (r.entity, r.action) for r in repaired.repairs}
    assert not await runtime.redis.exists(runtime.keys.api_key(kid)[1])


async def test_a_rounds_statements_outlast_the_pools_timeout(isolated: str, settings: Settings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A round's aggregates grow with the tables (every code row hashed in one statement,
    2.5 s per million codes): the round reads on a connection of its own, so a statement
    past the pool's client timeout still answers, where on the pool it is cancelled."""
    monkeypatch.setattr(database, "POOL_COMMAND_TIMEOUT_S", 0.5)
    async with open_runtime(settings, run_persister=False) as rt:
        with pytest.raises(TimeoutError):
            await rt.pool.fetch("SELECT pg_sleep(1)")
        rc = context(rt)
        await rc.begin_round()
        try:
            rows = await rc.fetch("SELECT 7 AS n FROM pg_sleep(1)")
        finally:
            await rc.end_round()
        assert [r["n"] for r in rows] == [7]
        report = await reconcile(rt)  # a whole run, the round's connection closed after it
        assert (report.result, report.exit_code) == ("agree", 0)
