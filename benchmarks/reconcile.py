"""Reconcile and restore time for a large invite drop (the domains that exist today).

    .venv/bin/python -m benchmarks.reconcile [--uses 100000] [--runs 3]

Two shapes of the same number of uses: many codes (100 codes x uses/100 users) and
one hot code (1 code x uses users, a single large set: the checksum-bucket path).
Setup runs the real path (redeem scripts, then the persister); then, per run:
``reconcile`` when the stores agree, ``reconcile`` with three rows deleted by hand
(found by bisection), and ``restore`` after every key of the prefix was deleted.

The issue's figure (``--figure``): 1,000,000 campaign codes (10 campaigns x 100,000,
uploaded in batches of 10,000, some reserved and assigned), 10,000 offers (a hold on
every tenth) and 100,000 promo uses (100 promos x 1,000), all through the engine's
scripts and then drained by the persister; reconcile (stores agree; 3 codes changed
in PostgreSQL) and restore after every key was deleted.

    .venv/bin/python -m benchmarks.reconcile --figure --runs 3 --uses 0 --set-members 0
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

from benchmarks.common import Stores, median, private_runtime, stores
from dropgate.engine.keyspace import delete_prefix
from dropgate.engine.offers import HoldRequest
from dropgate.persistence.reconcile.restore import restore
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.persistence.setdiff import SqlSide, StreamSide, diff_sets, set_members, sql_member
from dropgate.runtime import Runtime


async def _setup(rt: Runtime, codes: int, uses: int) -> tuple[float, float]:
    await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
    for c in range(codes):
        await rt.invites.create("bench", code=f"C{c}", max_uses=0, expires_at_ms=None, active=True)
    started = time.perf_counter()
    sem = asyncio.Semaphore(256)

    async def one(i: int) -> None:
        async with sem:
            await rt.invites.redeem("bench", f"C{i % codes}", user_id=f"user-{i}")

    for start in range(0, uses, 20_000):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 20_000, uses))))
    redeemed = time.perf_counter() - started
    started = time.perf_counter()
    persister = rt.new_persister(name="bench")
    await persister.drain(timeout_s=600)
    await persister.close()
    await persister.run()  # gives its partitions up
    return redeemed, time.perf_counter() - started


async def _wipe(rt: Runtime) -> None:
    await delete_prefix(rt.redis, rt.keys.prefix, batch=5000)


async def shape(s: Stores, codes: int, uses: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"agree": [], "drift": [], "restore": []}
    async with private_runtime(s, persister_enabled=False, partitions=16, redis_max_connections=64,
                               persister_batch_size=2000) as rt:
        redeemed, persisted = await _setup(rt, codes, uses)
        print(f"  setup: {uses:,} redemptions in {redeemed:.1f}s, persisted in {persisted:.1f}s")
        for _ in range(runs):
            t = time.perf_counter()
            report = await reconcile(rt, wait_s=0)
            times["agree"].append(time.perf_counter() - t)
            assert report.exit_code == 0, report.drifts
        await rt.pool.execute("""DELETE FROM invite_code_uses WHERE (code, user_id) IN
                                 (SELECT code, user_id FROM invite_code_uses ORDER BY user_id LIMIT 3)""")
        for _ in range(runs):
            t = time.perf_counter()
            report = await reconcile(rt, wait_s=0)
            times["drift"].append(time.perf_counter() - t)
            assert sum(len(d.redis or []) for d in report.drifts if d.field == "uses") == 3, report.drifts
        await reconcile(rt, repair=True, wait_s=0)
        for _ in range(runs):
            await _wipe(rt)
            t = time.perf_counter()
            result = await restore(rt)
            times["restore"].append(time.perf_counter() - t)
            assert result.restored["invites/invite"] == codes
        assert (await reconcile(rt, wait_s=0)).exit_code == 0
    return times


async def set_primitive(s: Stores, members: int, runs: int) -> dict[str, list[float]]:
    """The checksum set diff alone, on one Redis set vs one PostgreSQL table of ``members``
    strings shaped like campaign codes: the path the codes domain will use for 1,000,000."""
    times: dict[str, list[float]] = {"equal": [], "differ": []}
    async with private_runtime(s, persister_enabled=False) as rt:
        key = rt.keys.tenant("bench").base + ":scratch:codes"
        for start in range(0, members, 10_000):
            await rt.redis.sadd(key, *(f"CAMP1\x1fCODE{i:08d}\x1favailable"
                                       for i in range(start, min(start + 10_000, members))))
        await rt.pool.execute("CREATE TABLE bench_codes (campaign text, code text, status text)")
        await rt.pool.execute("""INSERT INTO bench_codes SELECT 'CAMP1', 'CODE' || lpad(g::text, 8, '0'), 'available'
                                   FROM generate_series(0, $1 - 1) g""", members)

        def sides() -> tuple[StreamSide, SqlSide]:
            async def produce() -> AsyncIterator[list[str]]:
                async for batch in set_members(rt.redis, [(key, "")]):
                    yield batch
            return StreamSide(produce), SqlSide(rt.pool.fetch, member_sql=sql_member("campaign", "code", "status"),
                                                from_sql="FROM bench_codes")

        for _ in range(runs):
            t = time.perf_counter()
            diff = await diff_sets(*sides())
            times["equal"].append(time.perf_counter() - t)
            assert diff.equal and diff.redis_count == members
        await rt.pool.execute(
            "UPDATE bench_codes SET status = 'assigned' WHERE code IN ('CODE00000007', 'CODE00500000')")
        await rt.pool.execute("DELETE FROM bench_codes WHERE code = 'CODE00999999'")
        for _ in range(runs):
            t = time.perf_counter()
            diff = await diff_sets(*sides())
            times["differ"].append(time.perf_counter() - t)
            assert len(diff.only_redis) == 3 and len(diff.only_postgres) == 2, diff
    return times


async def _figure_setup(rt: Runtime, codes: int, offers: int, promo_uses: int) -> dict[str, float]:
    took: dict[str, float] = {}
    await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
    t = time.perf_counter()
    per_campaign = 100_000
    for c in range(codes // per_campaign):
        for start in range(0, per_campaign, 10_000):
            await rt.codes.upload_batch("bench", f"camp{c}", "gold" if start % 20_000 else "silver",
                                        [f"K{c:02d}{i:07d}" for i in range(start, start + 10_000)])
        got = await rt.codes.reserve("bench", f"camp{c}", "gold", 2_000)
        await rt.codes.assign("bench", f"camp{c}", got.codes[:1_000])
    took["codes"] = time.perf_counter() - t
    t = time.perf_counter()
    sem = asyncio.Semaphore(128)

    async def offer(i: int) -> None:
        async with sem:
            await rt.offers.create("bench", offer_id=f"of{i}", event_id=f"ev{i % 100}", name=f"offer {i}",
                                   price_minor=2500, currency="usd", total=100, max_per_order=5,
                                   expires_at_ms=None, active=True)
            if i % 10 == 0:
                await rt.offers.purchase_batch(
                    "bench", f"of{i}", [HoldRequest(purchase_id=f"pu{i}", user_id=f"u{i}", quantity=2)], [],
                    hold_ttl_ms=3_600_000, rate_interval_ms=0, rate_burst=1000, idem_ttl_ms=1000,
                    idem_stale_ms=1000)

    await asyncio.gather(*(offer(i) for i in range(offers)))
    took["offers"] = time.perf_counter() - t
    t = time.perf_counter()
    promos = max(promo_uses // 1_000, 1)
    for p in range(promos):
        await rt.promos.create("bench", code=f"PR{p}", kind="fixed", value=100, currency="usd",
                               per_customer_limit=1_000_000)

    async def use(i: int) -> None:
        async with sem:
            await rt.promos.redeem_minor("bench", f"PR{i % promos}", customer_id=f"c{i % 5000}",
                                         base_minor=1000, currency="usd")

    for start in range(0, promo_uses, 20_000):
        await asyncio.gather(*(use(i) for i in range(start, min(start + 20_000, promo_uses))))
    took["promo uses"] = time.perf_counter() - t
    t = time.perf_counter()
    persister = rt.new_persister(name="bench")
    await persister.drain(timeout_s=900)
    await persister.close()
    await persister.run()
    took["persisted"] = time.perf_counter() - t
    return took


async def figure(s: Stores, runs: int, codes: int = 1_000_000, offers: int = 10_000,
                 promo_uses: int = 100_000) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"agree": [], "drift": [], "restore": []}
    async with private_runtime(s, persister_enabled=False, partitions=16, redis_max_connections=64,
                               persister_batch_size=2000) as rt:
        took = await _figure_setup(rt, codes, offers, promo_uses)
        print("  setup: " + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()))
        for _ in range(runs):
            t = time.perf_counter()
            report = await reconcile(rt, wait_s=0)
            times["agree"].append(time.perf_counter() - t)
            assert report.exit_code == 0, report.drifts
        counts = {c.kind: (c.checked, c.members) for c in report.counts}
        print(f"  compared (entities, members): {counts}")
        await rt.pool.execute("""UPDATE campaign_codes SET status = 'assigned', assigned_at = now()
                                  WHERE code IN ('K000000003', 'K050050000', 'K090099999')""")
        for _ in range(runs):
            t = time.perf_counter()
            report = await reconcile(rt, wait_s=0)
            times["drift"].append(time.perf_counter() - t)
            assert sum(len(d.redis or {}) for d in report.drifts if d.field == "status") == 3, report.drifts
        assert (await reconcile(rt, repair=True, wait_s=0)).exit_code == 0
        for _ in range(runs):
            await _wipe(rt)
            t = time.perf_counter()
            result = await restore(rt)
            times["restore"].append(time.perf_counter() - t)
            assert result.restored["codes/codes"] == codes // 100_000, result
            assert result.restored["offers/offer+purchase"] == offers, result
        assert (await reconcile(rt, wait_s=0)).exit_code == 0
    return times


async def main(uses: int, runs: int, set_size: int, with_figure: bool = False) -> None:
    s = stores()
    if with_figure:
        print(f"issue figure: 1,000,000 codes + 10,000 offers + 100,000 promo uses, {runs} runs (seconds)")
        times = await figure(s, runs)
        for name, label in (("agree", "reconcile, stores agree"), ("drift", "reconcile, 3 codes changed"),
                            ("restore", "restore after Redis lost")):
            values = times[name]
            print(f"  {label:<28} median {median(values):.2f}s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    if set_size:
        print(f"checksum set diff, one Redis set vs one table of {set_size:,} code-like members:")
        times = await set_primitive(s, set_size, runs)
        for name, label in (("equal", "equal"), ("differ", "3 codes differ")):
            values = times[name]
            print(f"  {label:<28} median {median(values):.2f}s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"reconcile / restore, {uses:,} invite uses, {runs} runs each (median, seconds)")
    for codes in (100, 1) if uses else ():
        print(f"{codes} code{'s' if codes > 1 else ''} x {uses // codes:,} users:")
        times = await shape(s, codes, uses, runs)
        for name, label in (("agree", "reconcile, stores agree"), ("drift", "reconcile, 3 uses deleted"),
                            ("restore", "restore after Redis lost")):
            values = times[name]
            print(f"  {label:<28} median {median(values):.2f}s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    if s.stack is not None:
        s.stack.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--uses", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set-members", type=int, default=1_000_000,
                        help="size of the set-diff primitive run (0 skips it)")
    parser.add_argument("--figure", action="store_true",
                        help="the issue's figure: 1,000,000 codes + 10,000 offers + 100,000 promo uses")
    args = parser.parse_args()
    asyncio.run(main(args.uses, args.runs, args.set_members, args.figure))
