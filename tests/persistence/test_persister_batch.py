"""The batch apply paths (#19): one statement per run of events must leave exactly what one
statement per event leaves, re-applying changes nothing, and a poison event in the middle
of a batch is dead-lettered alone while the rest of the batch is applied."""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import Any

import asyncpg
import msgspec
import pytest

from dropgate.engine.events import Event, parse_entry
from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.ids import text
from dropgate.persistence.appliers import APPLIERS
from dropgate.persistence.appliers.base import ts
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings

_SNAPSHOT = {
    "offer_purchases": "SELECT * FROM offer_purchases ORDER BY tenant_id, purchase_id",
    "offer_purchase_history": "SELECT * FROM offer_purchase_history ORDER BY 1, 2, 3",
    "offers": "SELECT tenant_id, offer_id, reserved, sold, version FROM offers ORDER BY 1, 2",
    "invite_codes": "SELECT tenant_id, code, used_count, version FROM invite_codes ORDER BY 1, 2",
    "invite_code_uses": "SELECT * FROM invite_code_uses ORDER BY 1, 2, 3",
}


class _Rollback(Exception):
    pass


async def _snapshot(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in await conn.fetch(sql)] for name, sql in _SNAPSHOT.items()}


async def _apply_runs(conn: asyncpg.Connection, events: list[Event[Any]]) -> None:
    """As the persister's commit does: one applier call per run of one type."""
    for etype, run in groupby(events, key=lambda e: e.type):
        await APPLIERS[etype](conn, list(run))


async def _apply_each(conn: asyncpg.Connection, events: list[Event[Any]]) -> None:
    for e in events:
        await APPLIERS[e.type](conn, [e])


async def _events(runtime: Runtime, tenant: str) -> list[Event[Any]]:
    p = runtime.keys.tenant(tenant).partition
    return [parse_entry(p, eid, fields)
            for eid, fields in await runtime.redis.xrange(runtime.keys.log(p))]


async def _hold(runtime: Runtime, tenant: str, offer: str, users: list[str]) -> list[str]:
    holds = [HoldRequest(purchase_id=new_purchase_id(), user_id=u, quantity=1 + i % 3,
                         idem_digest=f"{u:0>32}", fingerprint=f"fp-{u}") for i, u in enumerate(users)]
    results = await runtime.offers.purchase_batch(
        tenant, offer, holds, [], hold_ttl_ms=600_000, rate_interval_ms=0.0, rate_burst=1000,
        idem_ttl_ms=600_000, idem_stale_ms=60_000)
    assert all(r.ok for r in results)
    return [h.purchase_id for h in holds]


async def _crowd(runtime: Runtime) -> None:
    """Holds, confirms, releases and a refund of two offers, and invite uses, so that a run
    holds several versions of one purchase and several purchases of one offer."""
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    for offer in ("a", "b"):
        await runtime.offers.create("t1", offer_id=offer, event_id="drop", name=offer, price_minor=500,
                                    currency="usd", total=200, max_per_order=3, expires_at_ms=None,
                                    active=True)
    await runtime.invites.create("t1", code="HOT", max_uses=0, expires_at_ms=None, active=True)
    await runtime.invites.create("t1", code="COLD", max_uses=3, expires_at_ms=None, active=True)
    bought = {o: await _hold(runtime, "t1", o, [f"{o}{i}" for i in range(12)]) for o in ("a", "b")}
    for offer, ids in bought.items():
        for i, pid in enumerate(ids):
            if i % 3 == 0:
                await runtime.offers.confirm("t1", offer, pid, event_id=f"ev-{pid}",
                                             session_id=f"cs_{pid}", payment_intent=f"pi_{pid}")
            elif i % 3 == 1:
                await runtime.offers.release("t1", offer, pid, status="released")
        await runtime.offers.refund("t1", offer, ids[0], refund_id=f"re_{offer}", amount_minor=100,
                                    restock=False)
    for i in range(20):
        await runtime.invites.redeem("t1", "HOT", user_id=f"u{i}")
    for i in range(3):
        await runtime.invites.redeem("t1", "COLD", user_id=f"u{i}")


async def test_batch_apply_equals_event_by_event_apply_and_reapplies_as_a_no_op(runtime: Runtime) -> None:
    await _crowd(runtime)
    events = await _events(runtime, "t1")
    purchases = [e for e in events if e.type == "offer.purchase"]
    assert len(purchases) > len({e.entity for e in purchases}), "some purchase has several versions"
    snapshots = {}
    for name, apply in (("each", _apply_each), ("runs", _apply_runs)):
        async with runtime.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await apply(conn, events)
                    snapshots[name] = await _snapshot(conn)
                    await apply(conn, events)  # every event again: nothing changes
                    assert await _snapshot(conn) == snapshots[name]
                    raise _Rollback
            except _Rollback:
                pass
    assert snapshots["runs"] == snapshots["each"]
    got = snapshots["runs"]
    assert {(r["code"], r["used_count"]) for r in got["invite_codes"]} == {("HOT", 20), ("COLD", 3)}
    for offer in ("a", "b"):
        state = await runtime.offers.read("t1", offer)
        row = next(r for r in got["offers"] if r["offer_id"] == offer)
        assert (row["reserved"], row["sold"], row["version"]) == (state.reserved, state.sold, state.version)
        assert row["sold"] > 0 and row["reserved"] > 0


async def test_each_purchase_row_holds_its_last_record_field_by_field(runtime: Runtime) -> None:
    """The applier sends the records as JSON and PostgreSQL unpacks them: every column, the
    timestamps to the millisecond, the nulls and the refunds, equals the record the last event
    carried, and each history row its version's status and time."""
    await _crowd(runtime)
    everything = await _events(runtime, "t1")
    events = [e for e in everything if e.type == "offer.purchase"]
    last = {e.entity: e.data for e in events}
    async with runtime.pool.acquire() as conn, conn.transaction():
        await _apply_runs(conn, everything)
        rows = {r["purchase_id"]: dict(r) for r in await conn.fetch("SELECT * FROM offer_purchases")}
        history = {(r["purchase_id"], r["version"]): (r["status"], r["at"])
                   for r in await conn.fetch("SELECT * FROM offer_purchase_history")}
    assert len(rows) == len(last) == 24
    for d in last.values():
        row = rows[d.purchase_id]
        assert row == {
            "tenant_id": d.tenant_id, "purchase_id": d.purchase_id, "offer_id": d.offer_id,
            "user_id": d.user_id, "quantity": d.quantity, "status": d.status,
            "amount_minor": d.amount_minor, "currency": d.currency,
            "hold_expires_at": ts(d.hold_expires_ms), "checkout_session_id": d.session_id,
            "payment_intent": d.payment_intent, "refund_id": d.refund_id, "retaken": d.retaken,
            "created_at": ts(d.created_ms), "updated_at": ts(d.updated_ms), "version": d.version,
            "units": d.units, "refunded_minor": d.refunded_minor,
            "refunds": row["refunds"]}
        assert msgspec.json.decode(row["refunds"]) == d.refunds
    assert {r.refunds.get("re_a", 0) for r in last.values() if r.offer_id == "a"} == {0, 100}
    assert any(r.session_id is None for r in last.values())
    assert history == {(e.data.purchase_id, e.version): (e.data.status, ts(e.data.updated_ms)) for e in events}
    assert any(ts(e.data.updated_ms).microsecond for e in events), "some time has milliseconds"


async def test_a_run_holding_one_purchase_twice_applies_both_versions_in_order(runtime: Runtime) -> None:
    """``rounds``: the second version of a purchase in one run is applied after the first."""
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.offers.create("t1", offer_id="a", event_id="drop", name="a", price_minor=500,
                                currency="usd", total=10, max_per_order=3, expires_at_ms=None, active=True)
    [pid] = await _hold(runtime, "t1", "a", ["u1"])
    await runtime.offers.confirm("t1", "a", pid, event_id="ev1", session_id="cs_1", payment_intent="pi_1")
    events = [e for e in await _events(runtime, "t1") if e.type == "offer.purchase"]
    assert [e.version for e in events] == [1, 2]
    async with runtime.pool.acquire() as conn, conn.transaction():
        await _apply_runs(conn, await _events(runtime, "t1"))
        row = await conn.fetchrow("SELECT status, units, version, payment_intent FROM offer_purchases")
        assert dict(row) == {"status": "paid", "units": "sold", "version": 2, "payment_intent": "pi_1"}
        assert await conn.fetchval("SELECT count(*) FROM offer_purchase_history") == 2
        assert tuple(await conn.fetchrow("SELECT reserved, sold FROM offers")) == (0, 1)


async def test_poison_event_mid_batch_is_dead_lettered_alone(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.offers.create("t1", offer_id="a", event_id="drop", name="a", price_minor=500,
                                currency="usd", total=10_000, max_per_order=3, expires_at_ms=None,
                                active=True)
    tk = runtime.keys.tenant("t1")
    first = await _hold(runtime, "t1", "a", [f"x{i}" for i in range(150)])
    # a copy of a real purchase event whose status breaks the table's CHECK: it decodes,
    # and fails only in PostgreSQL, in the middle of the batch's one upsert statement
    _, fields = (await runtime.redis.xrevrange(tk.log, count=1))[0]
    record = msgspec.json.decode(fields[b"d"])
    record.update(purchase_id="pu_poison", status="bogus", user_id="poison")
    await runtime.redis.xadd(tk.log, {"t": "offer.purchase", "e": "purchase:t1:pu_poison", "v": "1",
                                      "d": msgspec.json.encode(record)})
    second = await _hold(runtime, "t1", "a", [f"y{i}" for i in range(150)])
    settings = make_settings(persister_max_retries=1, persister_retry_base_ms=0, persister_batch_size=1000)
    persister = Persister(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys,
                          scripts=runtime.scripts, settings=settings, name="batch")
    await persister.drain(timeout_s=60)
    assert persister.stats.dead_letters == 1
    assert persister.stats.applied_events >= 300
    dead = await runtime.pool.fetch("SELECT entity, error FROM dg_dead_letters")
    assert [r["entity"] for r in dead] == ["purchase:t1:pu_poison"]
    assert "check" in dead[0]["error"].lower()
    ids = {r["purchase_id"] for r in await runtime.pool.fetch("SELECT purchase_id FROM offer_purchases")}
    assert ids == set(first) | set(second)
    state = await runtime.offers.read("t1", "a")
    assert tuple(await runtime.pool.fetchrow("SELECT reserved, sold FROM offers")) == (state.reserved, 0)
    assert [text(d[1][b"e"]) for d in await runtime.redis.xrange(runtime.keys.dead_letters(tk.partition))] \
        == ["purchase:t1:pu_poison"]


class _OnePartitionDown(Persister):
    """PostgreSQL 'fails' once for the first partition committed while others apply."""

    failed: int | None = None
    armed = False

    async def _commit(self, p: int, events: list[Event[Any]], **kw: Any) -> None:
        if self.armed and self.failed is None:
            self.failed = p
            raise ConnectionError("PostgreSQL went away for this batch")
        await super()._commit(p, events, **kw)


async def test_partitions_applied_concurrently_keep_going_when_one_fails(
        runtime: Runtime, make_settings: Callable[..., Settings]) -> None:
    tenants = [f"t{i}" for i in range(40)]
    for t in tenants:
        await runtime.tenants.create(t, name=t, status="active", trial_end_ms=None)
        await runtime.invites.create(t, code="HOT", max_uses=0, expires_at_ms=None, active=True)
    partitions = {runtime.keys.tenant(t).partition for t in tenants}
    assert len(partitions) >= 4
    persister = _OnePartitionDown(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys,
                                  scripts=runtime.scripts, settings=make_settings(persister_concurrency=4),
                                  name="concurrent")
    await persister.drain()
    for i in range(400):
        await runtime.invites.redeem(tenants[i % len(tenants)], "HOT", user_id=f"u{i}")
    persister.armed = True
    with pytest.raises(ConnectionError):
        await persister.run_once()
    lag = await persister.lag()
    assert persister.failed is not None and lag[persister.failed] > 0
    assert sum(lag.values()) == lag[persister.failed]  # every other partition was applied
    await persister.drain()
    rows = await runtime.pool.fetch("SELECT tenant_id, used_count FROM invite_codes")
    assert {r["tenant_id"]: r["used_count"] for r in rows} == {t: 10 for t in tenants}
    assert await runtime.pool.fetchval("SELECT count(*) FROM invite_code_uses") == 400
