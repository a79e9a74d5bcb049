"""Redis time per purchase inside ``offer_purchase_batch`` (the script alone, no HTTP).

    .venv/bin/python -m benchmarks.offers_script [--runs 5] [--calls 300] [--batch 64]

Each call holds ``--batch`` new purchases (a new user and an idempotency key each) and
stores the final responses of the previous call's purchases, as the API does under a
crowd (the 201 of a purchase rides with its offer's next batch). The time is Redis'
own accounting (``INFO commandstats``, ``cmdstat_evalsha`` usec, which includes the
commands the script runs), so it counts work, not the wall clock, and a busy
machine disturbs it far less than a throughput figure. The counter is the instance's:
another client's script running during one of these calls would be counted with it,
which the median over calls leaves out.

Prints the median over runs of each run's median per-purchase time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from benchmarks.common import private_runtime, stores
from dropgate.engine.offers import FinishItem, HoldRequest, HoldResult
from dropgate.ids import new_id
from dropgate.runtime import Runtime

# a 201 body of the size the API sends (the stored response)
_BODY = (b'{"purchase_id":"pu_0123456789abcdef0123","status":"pending","checkout_session_id":'
         b'"cs_sandbox_0123456789abcdef0123456789","checkout_url":"http://127.0.0.1:8080/v1/sandbox/'
         b'checkout/cs_sandbox_0123456789abcdef0123456789","expires_at":"2026-11-21T20:00:00.000Z"}')


async def _evalsha_us(rt: Runtime) -> int:
    return int((await rt.redis.info("commandstats"))["cmdstat_evalsha"]["usec"])


async def one_run(rt: Runtime, calls: int, batch: int, run: int) -> float:
    finishes: list[FinishItem] = []
    per_purchase: list[float] = []
    for call in range(calls):
        holds = [HoldRequest(purchase_id=new_id("pu_"), user_id=f"r{run}c{call}u{i}", quantity=1,
                             idem_digest=f"{run:08x}{call:016x}{i:016x}", fingerprint=f"fp{call}x{i}")
                 for i in range(batch)]
        before = await _evalsha_us(rt)
        results: list[HoldResult] = await rt.offers.purchase_batch(
            "bench", "hot", holds, finishes, hold_ttl_ms=1_800_000, rate_interval_ms=200.0,
            rate_burst=10, idem_ttl_ms=86_400_000, idem_stale_ms=60_000)
        per_purchase.append((await _evalsha_us(rt) - before) / batch)
        if not all(r.ok for r in results):
            raise RuntimeError(f"a hold was refused: {next(r for r in results if not r.ok)}")
        finishes = [FinishItem(purchase_id=h.purchase_id, session_id="cs_sandbox_" + h.purchase_id,
                               checkout_url="http://127.0.0.1:8080/v1/sandbox/checkout/cs_sandbox_"
                               + h.purchase_id, idem_digest=h.idem_digest, status=201, body=_BODY)
                    for h in holds]
    return statistics.median(per_purchase[5:] or per_purchase)  # past the first calls' warm-up


async def main(runs: int, calls: int, batch: int) -> None:
    s = stores()
    async with private_runtime(s, persister_enabled=False, max_backlog=50_000_000,
                               purchase_batch_size=batch) as rt:
        await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
        await rt.offers.create("bench", offer_id="hot", event_id="drop", name="Hot", price_minor=2500,
                               currency="usd", total=10**9, max_per_order=3, expires_at_ms=None,
                               active=True)
        print(f"offer_purchase_batch: {runs} runs of {calls} calls x {batch} purchases "
              "(each call also stores the previous call's responses)")
        medians = []
        for run in range(runs):
            medians.append(await one_run(rt, calls, batch, run))
            print(f"  run {run + 1}: {medians[-1]:.1f} us of Redis per purchase (median of the calls)",
                  flush=True)
        print(f"median: {statistics.median(medians):.1f} us per purchase "
              f"(runs: {', '.join(f'{m:.1f}' for m in medians)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if min(args.runs, args.calls, args.batch) < 1:
        raise SystemExit("--runs, --calls and --batch must be at least 1")
    asyncio.run(main(args.runs, args.calls, args.batch))
