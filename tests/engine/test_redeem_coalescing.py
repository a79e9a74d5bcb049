"""Invite and promo redemptions share one script call per batch, yet each keeps its own answer.

A crowd on one hot code must travel in few script calls (the Batcher), with exact
counts, one event per use, PostgreSQL equal to Redis after the drain and reconcile
clean; a batch mixing valid and invalid requests answers each on its own.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dropgate.engine.events import InviteRedeemed, PromoRedeemed, parse_entry
from dropgate.engine.promos import Redemption, _Ask
from dropgate.errors import DropgateError, RateLimited
from dropgate.http.app import create_app
from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.engine.test_promos_concurrency import assert_consistent, assert_postgres_matches, redis_side
from tests.persistence.test_reconcile import _drained
from tests.support.apiserver import ApiServer


async def _events(runtime: Runtime, entity: str, etype: str) -> list[Any]:
    tk = runtime.keys.tenant("acme")
    return [parse_entry(tk.partition, eid, fields).data for eid, fields in await runtime.redis.xrange(tk.log)
            if text(fields[b"e"]) == entity and text(fields[b"t"]) == etype]


def _answer(result: object) -> object:
    return result.code if isinstance(result, DropgateError) else result


@pytest.mark.cluster
async def test_crowd_on_one_invite_travels_in_batches_with_exact_counts(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/invites", json={"code": "HOT", "max_uses": 40})
    assert status == 201
    users = [f"u{i % 300}" for i in range(400)]  # 100 users ask twice
    batcher = runtime.invites.redemptions
    before = (batcher.batches, batcher.items)

    results = await asyncio.gather(*(runtime.invites.redeem("acme", "HOT", user_id=u) for u in users),
                                   return_exceptions=True)

    batches, items = batcher.batches - before[0], batcher.items - before[1]
    assert items == 400 and batches <= 400 // 8  # coalesced: not one script call each
    ok = [(u, r) for u, r in zip(users, results, strict=True) if isinstance(r, int)]
    refused = collections.Counter(_answer(r) for r in results if not isinstance(r, int))
    assert len(ok) == 40 and sorted(r for _, r in ok) == list(range(1, 41))
    assert set(refused) <= {"EXHAUSTED", "ALREADY_USED"} and sum(refused.values()) == 360
    winners = {u for u, _ in ok}
    assert len(winners) == 40  # nobody twice
    events = await _events(runtime, "invite:acme:HOT", "invite.redeemed")
    assert all(isinstance(e, InviteRedeemed) for e in events)
    assert sorted((e.user_id, e.used_count) for e in events) == sorted(ok)

    tk = runtime.keys.tenant("acme")
    assert {text(u) for u in await runtime.redis.smembers(tk.invite_users("HOT"))} == winners
    await _drained(persister)
    rows = await runtime.pool.fetch(
        "SELECT user_id FROM invite_code_uses WHERE tenant_id = 'acme' AND code = 'HOT'")
    assert {r["user_id"] for r in rows} == winners
    assert await runtime.pool.fetchval(
        "SELECT used_count FROM invite_codes WHERE tenant_id = 'acme' AND code = 'HOT'") == 40
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


@pytest.mark.cluster
async def test_crowd_on_one_promo_over_http_with_exact_counts(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/promos", json={
        "code": "HOTP", "bonus": {"kind": "percent", "percent": "7.5"}, "currency": "usd",
        "max_uses": 90, "per_customer_limit": 2})
    assert status == 201
    customers = [f"c{i % 60}" for i in range(500)]  # 60 customers, 8 or 9 tries each
    batcher = runtime.promos.redemptions
    before = (batcher.batches, batcher.items)

    answers = await asyncio.gather(*(
        api.call("POST", "/v1/promos/HOTP/redeem", json={"customer_id": c, "base_amount": f"{10 + i}.99"})
        for i, c in enumerate(customers)))

    batches, items = batcher.batches - before[0], batcher.items - before[1]
    assert items == 500 and batches < 500 // 4
    won = [body for status, body in answers if status == 201]
    refused = collections.Counter(body["code"] for status, body in answers if status != 201)
    # the default limit (burst 10) lets each customer's 8 or 9 tries through to the script
    assert len(won) == 90
    assert set(refused) <= {"EXHAUSTED", "CUSTOMER_LIMIT"} and sum(refused.values()) == 410
    per_customer = collections.Counter(b["customer_id"] for b in won)
    assert max(per_customer.values()) <= 2
    assert sorted(b["times_used"] for b in won) == list(range(1, 91))

    side = await redis_side(runtime, "HOTP")
    assert_consistent(side)
    assert set(side["uses"]) == {b["use_id"] for b in won}
    events = await _events(runtime, "promo:acme:HOTP", "promo.redeemed")
    assert all(isinstance(e, PromoRedeemed) for e in events)
    assert sorted((e.use_id, e.customer_id, e.bonus_amount) for e in events) == sorted(
        (u, s.customer_id, s.bonus_amount) for u, s in side["uses"].items())
    await _drained(persister)
    await assert_postgres_matches(runtime, "HOTP", side)
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


def _users(*users: str) -> list[tuple[str, None]]:
    """A batch of unkeyed invite redemptions (the batch's items: user id, no record)."""
    return [(user, None) for user in users]


async def test_one_invite_batch_of_mixed_requests_answers_each_alone(runtime: Runtime) -> None:
    await runtime.tenants.create("acme", name="acme", status="active", trial_end_ms=None)
    await runtime.invites.create("acme", code="MIX", max_uses=3, expires_at_ms=None, active=True)
    await runtime.invites.create("acme", code="OFF", max_uses=0, expires_at_ms=None, active=False)
    await runtime.invites.create("acme", code="OLD", max_uses=0, expires_at_ms=1, active=True)
    flush = runtime.invites._redeem_batch
    got = [_answer(r) for r in await flush(("acme", "MIX"), _users("a", "b", "a", "c", "d", "b"))]
    assert got == [1, 2, "ALREADY_USED", 3, "EXHAUSTED", "ALREADY_USED"]
    assert [_answer(r) for r in await flush(("acme", "OFF"), _users("a", "b"))] == ["INACTIVE"] * 2
    assert [_answer(r) for r in await flush(("acme", "OLD"), _users("a"))] == ["EXPIRED"]
    assert [_answer(r) for r in await flush(("acme", "NOPE"), _users("a"))] == ["NOT_FOUND"]
    events = await _events(runtime, "invite:acme:MIX", "invite.redeemed")
    assert [(e.user_id, e.used_count) for e in events] == [("a", 1), ("b", 2), ("c", 3)]
    state = await runtime.invites.get("acme", "MIX")
    assert (state.used_count, state.version) == (3, 4) and state.last_used_ms is not None


async def test_one_promo_batch_of_mixed_requests_answers_each_alone(
        isolated: str, make_settings: Callable[..., Settings]) -> None:
    # burst 2: GCRA lets 3 through at one instant, then one per 1000 s
    async with open_runtime(make_settings(rate_limit_per_s=0.001, rate_limit_burst=2),
                            run_persister=False) as rt:
        await rt.tenants.create("acme", name="acme", status="active", trial_end_ms=None)
        await rt.promos.create("acme", code="MIX", kind="fixed", value=100, currency="usd",
                               max_uses=4, per_customer_limit=2)
        flush = rt.promos._redeem_batch
        asks = [
            _Ask("c1", "1000", "usd", "use_1", 0),        # ok: 1
            _Ask("c1", "1000", "eur", "use_2", 0),        # parsed in another currency
            _Ask("c2", "0", "usd", "use_3", 0),           # base out of range
            _Ask("c2", "500", "usd", "use_1", 0),         # use id taken by the first
            _Ask("c1", "200", "usd", "use_4", 1),         # limited (1 of 3), ok: 2
            _Ask("c1", "300", "usd", "use_5", 1),         # limited (2 of 3), customer limit
            _Ask("c1", "300", "usd", "use_6", 1),         # limited (3 of 3), customer limit
            _Ask("c1", "300", "usd", "use_6b", 1),        # rate limited before anything else
            _Ask("c3", "300", "usd", "use_7", 2),         # rate limit only: allowed
            _Ask("c3", "300", "usd", "use_8", 1),         # ok: 3
            _Ask("c4", "300", "usd", "use_9", 0),         # ok: 4
            _Ask("c5", "300", "usd", "use_10", 0),        # exhausted
        ]
        results = await flush(("acme", "MIX"), asks)
        got = [_answer(r) for r in results]
        assert [g.times_used if isinstance(g, Redemption) else g for g in got] == [
            1, "VALIDATION_ERROR", "VALIDATION_ERROR", "CONFLICT", 2, "CUSTOMER_LIMIT",
            "CUSTOMER_LIMIT", "RATE_LIMITED", None, 3, 4, "EXHAUSTED"]
        assert isinstance(results[1], DropgateError) and results[1].details == {
            "field": "base_amount", "currency": "usd"}
        limited = results[7]
        assert isinstance(limited, RateLimited)
        assert limited.details["scope"] == "promo_redeem" and limited.details["retry_after_s"] >= 1
        first = results[0]
        assert isinstance(first, Redemption)
        assert (first.use_id, first.bonus_amount, first.total_amount) == ("use_1", 100, 1100)
        side = await redis_side(rt, "MIX")
        assert_consistent(side)
        assert sorted(side["uses"]) == ["use_1", "use_4", "use_8", "use_9"]
        events = await _events(rt, "promo:acme:MIX", "promo.redeemed")
        assert [(e.use_id, e.customer_id, e.base_amount) for e in events] == [
            ("use_1", "c1", 1000), ("use_4", "c1", 200), ("use_8", "c3", 300), ("use_9", "c4", 300)]
        # a code that does not exist still spends the limit first (as the route always did)
        assert [_answer(r) for r in await flush(("acme", "NOPE"), [
            _Ask("c9", "1", "usd", "u1", 1), _Ask("c9", "1", "usd", "u2", 0),
            _Ask("c9", "1", "usd", "u1", 1), _Ask("c9", "1", "usd", "u2", 1)])] == ["NOT_FOUND"] * 4
        assert [_answer(r) for r in await flush(("acme", "NOPE"), [
            _Ask("c9", "1", "usd", "u3", 1)])] == ["RATE_LIMITED"]


async def test_route_refusals_before_the_script_still_spend_the_limit_first(
        isolated: str, make_settings: Callable[..., Settings]) -> None:
    async with open_runtime(make_settings(rate_limit_per_s=0.001, rate_limit_burst=2),
                            run_persister=False) as rt:
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            await api.call("POST", "/v1/promos", json={
                "code": "R", "bonus": {"kind": "fixed", "amount": "1"}, "currency": "usd",
                "per_customer_limit": 100})

            async def redeem(code: str, base: str) -> tuple[int, Any]:
                return await api.call("POST", f"/v1/promos/{code}/redeem",
                                      json={"customer_id": "k", "base_amount": base})

            # an unknown code and a base with too many decimals: refused, each after a token
            # (GCRA's burst 2 lets a third through at the same instant)
            assert [(await redeem("NOPE", "1"))[0], (await redeem("R", "1.001"))[0],
                    (await redeem("R", "1"))[0]] == [404, 400, 201]
            status, body = await redeem("R", "1")
            assert status == 429 and body["code"] == "RATE_LIMITED"
            status, body = await redeem("NOPE", "1")
            assert status == 429
            tk = rt.keys.tenant("acme")
            assert await rt.redis.hexists(tk.ratelimit_table("promo_redeem"), "k")
        finally:
            await client.close()


async def test_rate_limit_entries_past_their_time_are_forgotten_never_live_ones(runtime: Runtime) -> None:
    """The limit hash is pruned by sampling: only entries whose time has passed go."""
    await runtime.tenants.create("acme", name="acme", status="active", trial_end_ms=None)
    await runtime.promos.create("acme", code="PR", kind="fixed", value=1, currency="usd",
                                per_customer_limit=100)
    table = runtime.keys.tenant("acme").ratelimit_table("promo_redeem")
    live = {f"live{i}": "99999999999999" for i in range(100)}  # far in the future: still limiting
    await runtime.redis.hset(table, mapping={**{f"old{i}": "1" for i in range(1500)}, **live})
    for i in range(30):
        await runtime.promos.redeem_minor("acme", "PR", customer_id=f"new{i}", base_minor=100,
                                          currency="usd", rate_limit=True)
    left = {text(k): text(v) for k, v in (await runtime.redis.hgetall(table)).items()}
    assert {k: v for k, v in left.items() if k.startswith("live")} == live
    # (the new customers' own entries pass their time 200 ms later: they may go too)
    stale = sum(1 for k in left if k.startswith("old"))
    assert stale < 1500 - 100  # 30 calls sampled 18 fields each: most of what they saw was old
    with pytest.raises(RateLimited):
        await runtime.promos.redeem_minor("acme", "PR", customer_id="live0", base_minor=100,
                                          currency="usd", rate_limit=True)
