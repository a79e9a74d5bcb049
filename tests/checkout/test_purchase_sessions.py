"""A pending purchase's checkout session is kept apart from its record (#19).

The session is attached after the 201, and a crowd's purchases are all pending: the purchase
script writes each session to the tenant's purchase sessions hash (one field, no record read
and rebuilt), and the record takes it in when the purchase settles, so the event of that
change carries it to PostgreSQL and the entry goes (``lua/lib/dg_purchase_session.lua``).
Every reader of a pending purchase's session must still find it: the webhooks' session check,
a cancel expiring the session at the provider, an idempotent repeat's 201, the expiry. A record
that an earlier release wrote with its session in place must go on working.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from dropgate.engine.offers import FinishItem, HoldRequest, new_purchase_id
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import create_offer, fake_stripe, inventory, purchase, stripe_settings_fixture, webhook

__all__ = ["fake_stripe"]

settings = stripe_settings_fixture(stripe_timeout_s=10.0)

_CROWD = 300  # purchases, each its own caller; a third paid, canceled and expired each
_LIMITS: dict[str, Any] = dict(rate_interval_ms=0.001, rate_burst=10**6, idem_ttl_ms=86_400_000,
                               idem_stale_ms=60_000)


async def _records(runtime: Runtime, tenant: str) -> dict[str, dict[str, Any]]:
    raw = await runtime.redis.hgetall(runtime.keys.tenant(tenant).purchases())
    return {k.decode(): msgspec.json.decode(v) for k, v in raw.items()}


async def _sessions(runtime: Runtime, tenant: str) -> dict[str, str]:
    raw = await runtime.redis.hgetall(runtime.keys.tenant(tenant).purchase_sessions())
    return {k.decode(): v.decode() for k, v in raw.items()}


async def _attached(runtime: Runtime, tenant: str, count: int) -> dict[str, str]:
    """The sessions hash once ``count`` sessions are in it (each is attached after its 201,
    with the offer's next batch)."""
    deadline = time.monotonic() + 20
    while len(sessions := await _sessions(runtime, tenant)) < count:
        assert time.monotonic() < deadline, f"{len(sessions)} of {count} sessions attached"
        await asyncio.sleep(0.02)
    return sessions


async def _pg_sessions(runtime: Runtime, tenant: str) -> dict[str, str | None]:
    rows = await runtime.pool.fetch(
        "SELECT purchase_id, checkout_session_id FROM offer_purchases WHERE tenant_id = $1", tenant)
    return {r["purchase_id"]: r["checkout_session_id"] for r in rows}


@pytest.mark.cluster
async def test_a_crowds_sessions_are_kept_apart_then_settle_into_their_records(
        api: Api, runtime: Runtime, persister: Persister, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "hot", 1000)
    answers = await asyncio.gather(*(purchase(api, "hot", f"u{i}") for i in range(_CROWD)))
    assert [s for s, _ in answers] == [201] * _CROWD, [b for s, b in answers if s != 201][:3]
    bought = [b for _, b in answers]
    sessions = await _attached(runtime, "acme", _CROWD)

    # pending: each record as its hold wrote it, its session and URL in the hash alone
    records = await _records(runtime, "acme")
    assert sessions == {b["purchase_id"]: f"{b['checkout_session_id']}\n{b['checkout_url']}" for b in bought}
    assert all("session_id" not in records[b["purchase_id"]] for b in bought)
    seen = await runtime.offers.purchase("acme", bought[0]["purchase_id"])
    assert (seen.session_id, seen.checkout_url) == (bought[0]["checkout_session_id"], bought[0]["checkout_url"])

    # all at once: a third paid and a third expired by the provider's webhooks (each checked
    # against the purchase's session), a third canceled (which expires its session at the provider)
    paid, expired, canceled = bought[0::3], bought[1::3], bought[2::3]
    calls = ([webhook(api, *fake_stripe.event("checkout.session.completed", b["checkout_session_id"]))
              for b in paid]
             + [webhook(api, *fake_stripe.event("checkout.session.expired", b["checkout_session_id"]))
                for b in expired]
             + [api.call("POST", f"/v1/purchases/{b['purchase_id']}/cancel") for b in canceled])
    outcomes = await asyncio.gather(*calls)
    assert [(s, o.get("outcome")) for s, o in outcomes[:len(paid)]] == [(200, "confirmed")] * len(paid)
    assert [(s, o.get("outcome")) for s, o in outcomes[len(paid):len(paid) + len(expired)]] == (
        [(200, "released")] * len(expired))
    assert [(s, o.get("status")) for s, o in outcomes[len(paid) + len(expired):]] == [(200, "canceled")] * len(canceled)
    assert all(fake_stripe.sessions[b["checkout_session_id"]]["status"] == "expired" for b in canceled)
    assert await inventory(api, "hot") == {"total": 1000, "available": 1000 - len(paid), "reserved": 0,
                                           "sold": len(paid)}

    # settled: every record took its session in (and its URL), and the hash is empty
    assert await _sessions(runtime, "acme") == {}
    records = await _records(runtime, "acme")
    status = {**{b["purchase_id"]: "paid" for b in paid}, **{b["purchase_id"]: "expired" for b in expired},
              **{b["purchase_id"]: "canceled" for b in canceled}}
    assert {pid: (r["status"], r["session_id"], r["checkout_url"]) for pid, r in records.items()} == {
        b["purchase_id"]: (status[b["purchase_id"]], b["checkout_session_id"], b["checkout_url"]) for b in bought}

    # PostgreSQL has every session, as the settling events carried them
    await persister.drain()
    assert await _pg_sessions(runtime, "acme") == {b["purchase_id"]: b["checkout_session_id"] for b in bought}
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_expiry_takes_each_session_into_its_record(runtime: Runtime, persister: Persister) -> None:
    """Holds whose expiry passed, released by the sweeper's script and lazily by the next
    purchase: each record takes its session in, and the event carries it."""
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.offers.create("t1", offer_id="o", event_id="e", name="O", price_minor=100, currency="usd",
                                total=10**6, max_per_order=3, expires_at_ms=None, active=True)

    async def buy(i: int, ttl_ms: int) -> str:
        pid = new_purchase_id()
        [held] = await runtime.offers.purchase_batch(
            "t1", "o", [HoldRequest(purchase_id=pid, user_id=f"u{i}", quantity=1)], [], hold_ttl_ms=ttl_ms,
            **_LIMITS)
        assert held.ok, held
        return pid

    short = await asyncio.gather(*(buy(i, 300) for i in range(200)))  # a crowd, each its own caller
    attach = [FinishItem(purchase_id=pid, session_id=f"cs_{pid}", checkout_url=f"https://pay.test/{pid}")
              for pid in short]
    await asyncio.gather(*(runtime.offers.purchase_batch("t1", "o", [], attach[i:i + 20], hold_ttl_ms=300,
                                                         **_LIMITS) for i in range(0, 200, 20)))
    assert len(await _sessions(runtime, "t1")) == 200
    await asyncio.sleep(0.35)
    assert await runtime.offers.expire_holds("t1", "o", limit=120) == 120  # the sweeper's step
    await buy(1000, 60_000)  # the lazy expiry releases the other 80 first
    assert await _sessions(runtime, "t1") == {}
    records = await _records(runtime, "t1")
    assert {pid: (records[pid]["status"], records[pid]["session_id"]) for pid in short} == {
        pid: ("expired", f"cs_{pid}") for pid in short}
    assert (await runtime.offers.read("t1", "o")).reserved == 1
    await persister.drain()
    assert {pid: s for pid, s in (await _pg_sessions(runtime, "t1")).items() if pid in short} == {
        pid: f"cs_{pid}" for pid in short}
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0


async def test_records_with_their_session_in_place_still_answer(runtime: Runtime, persister: Persister) -> None:
    """A pending record an earlier release wrote with its session spliced in: a repeat of
    its key renders the 201 from it, and the settling event carries it. An entry with no
    URL in it gives the session alone."""
    await runtime.tenants.create("t2", name="t2", status="active", trial_end_ms=None)
    await runtime.offers.create("t2", offer_id="o", event_id="e", name="O", price_minor=100, currency="usd",
                                total=10, max_per_order=3, expires_at_ms=None, active=True)
    purchases = runtime.keys.tenant("t2").purchases()
    first = HoldRequest(purchase_id="pu_old", user_id="u1", quantity=1, idem_digest="k1", fingerprint="f1")
    [held] = await runtime.offers.purchase_batch("t2", "o", [first], [], hold_ttl_ms=60_000, **_LIMITS)
    assert held.ok
    raw = (await runtime.redis.hget(purchases, "pu_old")).decode()
    await runtime.redis.hset(purchases, "pu_old",
                             raw[:-1] + ',"session_id":"cs_old","checkout_url":"https://pay.test/old"}')
    again = HoldRequest(purchase_id="pu_again", user_id="u1", quantity=1, idem_digest="k1", fingerprint="f1")
    [replay] = await runtime.offers.purchase_batch("t2", "o", [again], [], hold_ttl_ms=60_000, **_LIMITS)
    assert (replay.replay, replay.status, replay.purchase_id, replay.session_id, replay.checkout_url) == (
        1, 201, "pu_old", "cs_old", "https://pay.test/old")
    # an entry with no URL in it (written by hand): the session alone
    bare = HoldRequest(purchase_id="pu_bare", user_id="u3", quantity=1)
    [took] = await runtime.offers.purchase_batch("t2", "o", [bare], [], hold_ttl_ms=60_000, **_LIMITS)
    assert took.ok
    await runtime.redis.hset(runtime.keys.tenant("t2").purchase_sessions(), "pu_bare", "cs_bare")
    bare_record = await runtime.offers.purchase("t2", "pu_bare")
    assert (bare_record.session_id, bare_record.checkout_url) == ("cs_bare", "")
    paid = await runtime.offers.confirm("t2", "o", "pu_old", event_id="evt_1", session_id="",
                                        payment_intent="pi_1")
    assert paid.outcome == "confirmed"
    await runtime.offers.release("t2", "o", "pu_bare", status="canceled")
    assert (await _records(runtime, "t2"))["pu_bare"]["session_id"] == "cs_bare"
    assert await _sessions(runtime, "t2") == {}
    await persister.drain()
    assert await _pg_sessions(runtime, "t2") == {"pu_old": "cs_old", "pu_bare": "cs_bare"}
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
