"""One hot offer's purchase statements on one PostgreSQL connection against several at once.

    .venv/bin/python -m benchmarks.purchase_concurrency [--connections 1,2] [--statements 20] [--rounds 4]

Why: a crowd on one offer is one partition of the event log, and the persister applies a
partition's batches one after another, so its own rate on a hot offer is what one
PostgreSQL backend does with the purchases' statement (``persister_breakdown``: most of an
event's time). Several partitions are applied at once already; this measures what a single
hot partition would gain from two of its batches in flight on two connections, before anyone
builds that: each transaction runs the applier's statement (``appliers/offers.py:
_PURCHASES_APPLY``, with its triggers: the offer's counters, its check per statement) on
``--holds`` new holds of the same offer, as the persister commits them. The parameters are
encoded before the clock starts (the persister's own CPU is not in it: PostgreSQL's side
alone). Each round times ``--statements`` transactions on each connection count in turn (the
order alternating), on one growing table; prints events/s per count, the medians and their
ratio to one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks.common import private_runtime, stores
from benchmarks.purchase_statement import OFFER_SQL, new_holds, purchase_ids
from dropgate.persistence.appliers import offers as offers_applier
from dropgate.runtime import Runtime


class Holds:
    """New holds of one offer (``purchase_statement.OFFER_SQL``), one statement's parameter at
    a time, the offer's version growing across them."""

    def __init__(self, holds: int) -> None:
        self.holds = holds
        self.version = 1
        self.now = int(time.time() * 1000)

    def parameter(self) -> str:
        parameter = new_holds(purchase_ids("ordered", self.holds), self.now, self.version)
        self.version += self.holds
        return parameter


async def timed(rt: Runtime, holds: Holds, connections: int, statements: int) -> float:
    """Events/s of ``statements`` transactions over ``connections`` at once."""
    queue = [holds.parameter() for _ in range(statements)]

    async def worker() -> None:
        async with rt.pool.acquire() as conn:
            while queue:
                parameter = queue.pop(0)
                async with conn.transaction():
                    await conn.execute(offers_applier._PURCHASES_APPLY, parameter)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return statements * holds.holds / (time.perf_counter() - started)


async def main(counts: list[int], statements: int, rounds: int, holds_per: int) -> None:
    async with private_runtime(stores(), persister_enabled=False,
                               database_pool_size=max(counts) + 1) as rt:
        async with rt.pool.acquire() as conn:
            await conn.execute(OFFER_SQL)
        holds = Holds(holds_per)
        await timed(rt, holds, 1, max(1, statements // 4))  # warm-up: plans, caches, the first pages
        rates: dict[int, list[float]] = {n: [] for n in counts}
        for r in range(rounds):
            for n in (counts if r % 2 == 0 else counts[::-1]):
                rate = await timed(rt, holds, n, statements)
                rates[n].append(rate)
                print(f"round {r + 1}: {n} connection{'s' if n > 1 else ''} {rate:,.0f} events/s", flush=True)
        base = statistics.median(rates[counts[0]])
        print(f"\n{statements} statements of {holds_per:,} holds of one offer per round and count, "
              f"{rounds} rounds; medians:\n")
        print("| connections | events/s | per round | / one |")
        print("| --- | --- | --- | --- |")
        for n in counts:
            median = statistics.median(rates[n])
            print(f"| {n} | {median:,.0f} | {', '.join(f'{v:,.0f}' for v in rates[n])} | {median / base:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--connections", default="1,2", help="connection counts, the first the baseline")
    parser.add_argument("--statements", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--holds", type=int, default=1000)
    args = parser.parse_args()
    try:
        counts = [int(v) for v in args.connections.split(",") if v]
    except ValueError:
        parser.error(f"--connections takes counts separated by commas, not {args.connections!r}")
    if not counts or min(counts) < 1 or min(args.statements, args.rounds, args.holds) < 1:
        parser.error("--connections, --statements, --rounds and --holds must be at least 1")
    asyncio.run(main(counts, args.statements, args.rounds, args.holds))
