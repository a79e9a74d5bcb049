"""The purchases' statement's json parameter: the record bytes the scripts wrote (``raw_rows``)
against the same records decoded and encoded again (``json_rows``, before 2026-12-07).

    .venv/bin/python -m benchmarks.purchase_param [--rounds 40] [--holds 1000]

On a fresh schema (``private_runtime``) with one offer, each round builds ``--holds`` new hold
events as the persister reads them (``purchase_statement.hold_events``: ``parse_entry`` of the
bytes the hold script writes), then
applies them with the offers applier's own statement (``appliers/offers.py:
_PURCHASES_APPLY``) once with each parameter, in alternating order, each in a transaction of
its own. It reports, per hold, PostgreSQL's CPU for the statement (its backend's on-CPU time,
``/proc/<pid>/schedstat``, nanoseconds: the machine's PostgreSQL runs here) and this process's
CPU to build the parameter (``time.process_time``). Both are work, not wall time, so a busy
machine disturbs them far less than a drain rate (``benchmarks.persister`` gives that).
PostgreSQL must run on this machine (its backend's ``/proc`` entry is read).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks.common import backend_cpu_s, private_runtime, require_local_backend, stores
from benchmarks.purchase_statement import OFFER_SQL, hold_events, purchase_ids
from dropgate.persistence.appliers.base import json_rows, raw_rows
from dropgate.persistence.appliers.offers import _PURCHASES_APPLY


async def main(args: argparse.Namespace) -> None:
    s = stores()
    pg_us: dict[str, list[float]] = {"raw_rows": [], "json_rows": []}
    build_us: dict[str, list[float]] = {"raw_rows": [], "json_rows": []}
    async with private_runtime(s, persister_enabled=False) as rt:
        async with rt.pool.acquire() as conn:
            await conn.execute(OFFER_SQL)
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            require_local_backend(backend, s.database_url, "purchase_param")
            version = 1
            for rnd in range(args.rounds):
                for mode in (("raw_rows", "json_rows") if rnd % 2 else ("json_rows", "raw_rows")):
                    events = hold_events(purchase_ids("ordered", args.holds), int(time.time() * 1000), version)
                    version += args.holds
                    t0 = time.process_time()
                    param = raw_rows(events) if mode == "raw_rows" else json_rows([e.data for e in events])
                    built = time.process_time() - t0
                    c0 = backend_cpu_s(backend)
                    async with conn.transaction():
                        await conn.execute(_PURCHASES_APPLY, param)
                    pg_us[mode].append((backend_cpu_s(backend) - c0) * 1e6 / args.holds)
                    build_us[mode].append(built * 1e6 / args.holds)
            applied = await conn.fetchval("SELECT count(*) FROM offer_purchases")
    if applied != 2 * args.rounds * args.holds:
        raise SystemExit(f"applied {applied} purchases, expected {2 * args.rounds * args.holds}")
    print(f"{args.rounds} rounds of {args.holds:,} holds with each parameter ({applied:,} purchases applied), "
          "per hold (medians of the rounds; p25-p75):")
    print("\n| parameter | PostgreSQL CPU µs | building it, µs |\n| --- | --- | --- |")
    for mode in ("json_rows", "raw_rows"):
        q = statistics.quantiles(pg_us[mode], n=4)
        print(f"| {mode} | {statistics.median(pg_us[mode]):.2f} ({q[0]:.2f}-{q[2]:.2f}) | "
              f"{statistics.median(build_us[mode]):.2f} |")
    pg = statistics.median(pg_us["raw_rows"]) / statistics.median(pg_us["json_rows"])
    build = statistics.median(build_us["raw_rows"]) / statistics.median(build_us["json_rows"])
    print(f"\nraw_rows / json_rows: PostgreSQL {pg:.2f}, building {build:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--holds", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
