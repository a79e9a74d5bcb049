"""Promo codes under crowds: exact counts, counters that never drift, deactivation order."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Any

import msgspec
import pytest

from dropgate.engine.events import PromoRedeemed, PromoSaved, parse_entry
from dropgate.engine.promos import PromoUse
from dropgate.errors import DropgateError, NotFound
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api


async def redis_side(rt: Runtime, code: str) -> dict[str, Any]:
    """Counters and use records read in ONE MULTI, so they come from one instant."""
    tk = rt.keys.tenant("acme")
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.hmget(tk.promo(code), "times_used", "total_bonus_issued")
        pipe.hgetall(tk.promo_uses(code))
        pipe.hgetall(tk.promo_customers(code))
        counters, raw_uses, customers = await pipe.execute()
    uses = {k.decode(): msgspec.json.decode(v, type=PromoUse) for k, v in raw_uses.items()}
    return {
        "times_used": int(counters[0]), "total_bonus_issued": int(counters[1]), "uses": uses,
        "customers": {k.decode(): int(v) for k, v in customers.items()},
    }


def assert_consistent(side: dict[str, Any]) -> None:
    uses: dict[str, PromoUse] = side["uses"]
    assert side["times_used"] == len(uses)
    assert side["total_bonus_issued"] == sum(u.bonus_amount for u in uses.values())
    per_customer = collections.Counter(u.customer_id for u in uses.values())
    assert side["customers"] == dict(per_customer)


async def postgres_side(rt: Runtime, code: str) -> dict[str, Any]:
    """The rows, and the trigger-kept counters compared with an aggregate over the rows."""
    rows = await rt.pool.fetch(
        "SELECT use_id, customer_id, bonus_amount FROM promo_code_uses"
        " WHERE tenant_id = 'acme' AND code = $1", code)
    check = await rt.pool.fetchrow(
        """SELECT p.times_used, p.total_bonus_issued,
                  (SELECT count(*) FROM promo_code_uses u
                    WHERE u.tenant_id = p.tenant_id AND u.code = p.code) AS n,
                  (SELECT coalesce(sum(bonus_amount), 0) FROM promo_code_uses u
                    WHERE u.tenant_id = p.tenant_id AND u.code = p.code) AS bonus
             FROM promo_codes p WHERE p.tenant_id = 'acme' AND p.code = $1""", code)
    return {"rows": {r["use_id"]: (r["customer_id"], r["bonus_amount"]) for r in rows},
            "times_used": check["times_used"], "total_bonus_issued": check["total_bonus_issued"],
            "n": check["n"], "bonus": check["bonus"]}


async def assert_postgres_matches(rt: Runtime, code: str, side: dict[str, Any]) -> None:
    pg = await postgres_side(rt, code)
    assert pg["rows"] == {k: (u.customer_id, u.bonus_amount) for k, u in side["uses"].items()}
    assert (pg["n"], pg["bonus"]) == (len(side["uses"]), side["total_bonus_issued"])
    assert (pg["times_used"], pg["total_bonus_issued"]) == (pg["n"], pg["bonus"])


@pytest.mark.cluster
async def test_thousand_redemptions_for_a_hundred_uses(api: Api, runtime: Runtime,
                                                       persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/promos", json={
        "code": "DROP", "bonus": {"kind": "percent", "percent": "12.5"}, "currency": "usd",
        "max_uses": 100, "per_customer_limit": 1})
    assert status == 201
    customers = [f"cust{i}" for i in range(400)]
    bases = [f"{random.Random(i).randint(1, 50000) / 100:.2f}" for i in range(1000)]
    answers = await asyncio.gather(*(
        api.call("POST", "/v1/promos/DROP/redeem",
                 json={"customer_id": customers[i % 400], "base_amount": bases[i]})
        for i in range(1000)))
    won = [body for status, body in answers if status == 201]
    refused = collections.Counter(body["code"] for status, body in answers if status != 201)
    assert len(won) == 100
    assert set(refused) <= {"EXHAUSTED", "CUSTOMER_LIMIT"} and sum(refused.values()) == 900
    assert len({b["customer_id"] for b in won}) == 100  # no customer twice
    assert sorted(b["times_used"] for b in won) == list(range(1, 101))
    side = await redis_side(runtime, "DROP")
    assert_consistent(side)
    assert set(side["uses"]) == {b["use_id"] for b in won}
    status, promo = await api.call("GET", "/v1/promos/DROP")
    issued = sum(int(b["bonus_amount"].replace(".", "")) for b in won)
    assert promo["times_used"] == 100
    assert promo["total_bonus_issued"] == f"{issued // 100}.{issued % 100:02d}"
    await persister.drain()
    await assert_postgres_matches(runtime, "DROP", side)


async def test_interleaved_redemptions_and_rollbacks(runtime: Runtime,
                                                     persister: Persister) -> None:
    promos = runtime.promos
    await promos.create("acme", code="MIX", kind="percent", value=333_333, currency="usd",
                        max_uses=120, per_customer_limit=3)
    live: list[str] = []
    outcomes: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()
    snapshots = 0

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            if live and rng.random() < 0.45:
                use_id = rng.choice(live)  # two workers may pick the same use: one gets 404
                try:
                    await promos.rollback("acme", "MIX", use_id)
                    live.remove(use_id)
                    outcomes["rolled_back"] += 1
                except NotFound:
                    outcomes["NOT_FOUND"] += 1
            else:
                try:
                    r = await promos.redeem_minor(
                        "acme", "MIX", customer_id=f"c{rng.randint(0, 40)}",
                        base_minor=rng.randint(1, 10**9), currency="usd")
                    live.append(r.use_id)
                    outcomes["redeemed"] += 1
                except DropgateError as exc:
                    outcomes[exc.code] += 1

    async def watcher() -> None:
        nonlocal snapshots
        while not stop.is_set():
            assert_consistent(await redis_side(runtime, "MIX"))
            snapshots += 1
            await asyncio.sleep(0)

    watch = asyncio.create_task(watcher())
    await asyncio.gather(*(worker(s) for s in range(60)))
    stop.set()
    await watch
    assert snapshots > 5
    assert outcomes["redeemed"] > 100 and outcomes["rolled_back"] > 100
    side = await redis_side(runtime, "MIX")
    assert_consistent(side)
    assert sorted(side["uses"]) == sorted(live)
    assert side["times_used"] == outcomes["redeemed"] - outcomes["rolled_back"]
    # every use ever rolled back is gone for good: a second rollback changes nothing
    await persister.drain()
    await assert_postgres_matches(runtime, "MIX", side)


async def test_deactivation_racing_a_flood(api: Api, runtime: Runtime,
                                           persister: Persister) -> None:
    status, _ = await api.call("POST", "/v1/promos", json={
        "code": "FLASH", "bonus": {"kind": "fixed", "amount": "5"}, "currency": "usd"})
    assert status == 201
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(900):
        queue.put_nowait(i)
    successes: list[dict[str, Any]] = []
    after_commit: list[tuple[int, Any]] = []  # requests sent after the PATCH answered
    refused: collections.Counter[str] = collections.Counter()
    enough = asyncio.Event()
    committed = asyncio.Event()

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            sent_after = committed.is_set()
            status, body = await api.call("POST", "/v1/promos/FLASH/redeem",
                                          json={"customer_id": f"c{i}", "base_amount": "20"})
            if sent_after:
                after_commit.append((status, body))
            if status == 201:
                successes.append(body)
                if len(successes) >= 150:
                    enough.set()
            else:
                refused[body["code"]] += 1

    async def deactivate() -> None:
        await enough.wait()
        status, body = await api.call("PATCH", "/v1/promos/FLASH", json={"active": False})
        assert status == 200 and body["active"] is False
        committed.set()

    await asyncio.gather(deactivate(), *(worker() for _ in range(40)))
    assert len(successes) >= 150 and refused["INACTIVE"] > 100
    assert len(successes) + refused["INACTIVE"] == 900 and set(refused) == {"INACTIVE"}
    assert after_commit and all(s == 409 and b["code"] == "INACTIVE" for s, b in after_commit)

    # The log orders every change of the partition: no redemption after the deactivation.
    tk = runtime.keys.tenant("acme")
    entries = await runtime.redis.xrange(tk.log)
    events = [e for e in (parse_entry(tk.partition, eid, f) for eid, f in entries)
              if e.entity == "promo:acme:FLASH"]
    off = [i for i, e in enumerate(events) if isinstance(e.data, PromoSaved) and not e.data.active]
    assert len(off) == 1
    before = [e.data for e in events[:off[0]] if isinstance(e.data, PromoRedeemed)]
    assert not [e for e in events[off[0]:] if isinstance(e.data, PromoRedeemed)]
    assert {d.use_id for d in before} == {b["use_id"] for b in successes}
    versions = [e.version for e in events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)

    side = await redis_side(runtime, "FLASH")
    assert_consistent(side)
    assert side["times_used"] == len(successes)
    await persister.drain()
    await assert_postgres_matches(runtime, "FLASH", side)
    active = await runtime.pool.fetchval(
        "SELECT active FROM promo_codes WHERE tenant_id = 'acme' AND code = 'FLASH'")
    assert active is False
