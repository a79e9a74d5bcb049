"""Where a persister's drain time goes: reads, parsing, appliers' SQL, the rest of the commit, acks.

    .venv/bin/python -m benchmarks.persister_breakdown [--domain offers] [--events 20000]
        [--batch-size 1000] [--first 0] [--pipeline]

Fills one domain's log through the real scripts (``benchmarks/persister_fill.py``), then
drains it, one batch at a time (``--pipeline``: two at once, their steps overlapping), with
the persister's steps wrapped in timers (wall clock, so a wait on PostgreSQL or Redis counts
to the step that waits). The steps nest: ``commit`` holds the appliers, the offset update
and ``ack+trim``, which holds ``trim``. It tells which of the
candidate changes can matter before one is measured: a step that takes 2% of the time
cannot give 1.5x. ``--first N``: before the fill, N single operations (an offer's 64 holds,
one use, one reservation), each drained at once, as a drop's first buyers arrive: the
lookups PostgreSQL plans meanwhile are planned on small tables (#19: the history's
foreign key check planned so crawled, BENCHMARKS.md "The persister's own rate").
Each SQL statement the appliers send is timed too (by its first words:
asyncpg's encoding of the arguments plus PostgreSQL's execution), and the drain's CPU in
this process (``time.process_time``) is printed per event: what is left of the wall time
is PostgreSQL's and the round trips'.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from benchmarks import persister_fill
from benchmarks.common import private_runtime, stores
from dropgate.persistence import claims as claims_module
from dropgate.persistence import persister as persister_module
from dropgate.persistence.appliers import APPLIERS

_spent: collections.Counter[str] = collections.Counter()


def _timed(label: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            _spent[label] += time.perf_counter() - started
    return wrapper


def _instrument() -> None:
    cls = persister_module.Persister
    cls._read = _timed("read", cls._read)  # type: ignore[method-assign]
    cls._open = _timed("commit", cls._open)  # type: ignore[method-assign]
    cls._close = _timed("commit", cls._close)  # type: ignore[method-assign]
    cls._ack = _timed("ack+trim", cls._ack)  # type: ignore[method-assign]
    persister_module.trim_log = _timed("trim", persister_module.trim_log)  # type: ignore[assignment]
    for etype, fn in list(APPLIERS.items()):
        APPLIERS[etype] = _timed(f"applier {etype}", fn)
    execute = asyncpg.Connection.execute

    async def execute_timed(conn: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return await execute(conn, query, *args, **kwargs)
        finally:
            _spent["  sql: " + " ".join(query.split())[:48]] += time.perf_counter() - started
    asyncpg.Connection.execute = execute_timed  # type: ignore[method-assign]
    parse = claims_module.parse_entry  # where the persister's reads and claims decode each entry

    def parse_timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return parse(*args)
        finally:
            _spent["parse"] += time.perf_counter() - started
    claims_module.parse_entry = parse_timed  # type: ignore[assignment]


async def main(domain: str, events: int, batch_size: int, first: int = 0, pipeline: bool = False) -> None:
    _instrument()
    async with private_runtime(stores(), persister_enabled=False, max_backlog=50_000_000,
                               persister_batch_size=batch_size, persister_pipeline=pipeline) as rt:
        await persister_fill.setup(rt, domain, "bt", capacity=events + 1000)
        persister = rt.new_persister(name="breakdown")
        await persister.drain(timeout_s=120)
        one = persister_fill.operation(rt, domain, "bt", "first")
        for i in range(first):
            await one(i)
            await persister.drain(timeout_s=120)
        await persister_fill.fill(rt, domain, "bt", events)
        _spent.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        await persister.drain(timeout_s=600)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"{domain}: {events:,} events drained in {total:.2f} s ({events / total:,.0f}/s), "
          f"batches of {batch_size}; {total / events * 1e6:.1f} us per event, of which this process's "
          f"CPU {cpu / events * 1e6:.1f} us")
    for label, seconds in _spent.most_common():
        print(f"  {label:56} {seconds:7.2f} s  {seconds / total:6.1%}  {seconds / events * 1e6:6.1f} us/event")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain", default="offers", choices=persister_fill.DOMAINS)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0,
                        help="single operations applied one at a time before the fill")
    parser.add_argument("--pipeline", action="store_true",
                        help="two batches at once (DROPGATE_PERSISTER_PIPELINE): their steps overlap, so "
                             "the shares add up to more than the wall time")
    args = parser.parse_args()
    asyncio.run(main(args.domain, args.events, args.batch_size, args.first, args.pipeline))
