"""What a read of the log costs its reader: XREADGROUP's reply as the server sent it, against redis-py's parse.

    .venv/bin/python -m benchmarks.log_reads [--rounds 15] [--calls 16] [--batch 64]

Why: the persister and the webhook dispatcher read the partition logs with XREADGROUP,
about 1,000 entries a read. redis-py's own callback for that reply makes a dict of each
entry's fields and a list of tuples of each stream's entries, which ``parse_entry`` then
reads once more; the clients ``redisclient.connect`` makes leave the reply as the server
sent it, and ``claims.by_partition`` reads the scripts' fields by position.

On a ``redis-server`` of this run's own (127.0.0.1, a free port, no persistence, stopped
by its pid), ``--calls`` script calls append ``--batch`` purchase entries each, as the
purchase script does (``benchmarks.log_entries``' per-event layout: ``t e v d``, a record of
a purchase's shape), and one XREADGROUP through a client of ``redisclient.connect`` reads
them all. Then, per round, this process's CPU time (``time.process_time``) of:

- ``parsed``: redis-py's callback for the reply (a fresh client's ``response_callbacks``,
  the one ``connect`` replaces), then ``by_partition`` of what it gives;
- ``as sent``: ``by_partition`` of the reply as the server sent it.

Both must give the same events, every one a purchase, or the command exits 1. Prints µs per
event, round by round, and the medians (BENCHMARKS.md, "The persister's reads as the server
sent them"). Nothing else runs meanwhile: the figures are the reader's CPU, not Redis's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks.log_entries import WRITE, write
from benchmarks.redis_costs import private_redis
from dropgate.engine.events import OfferPurchase
from dropgate.engine.redisclient import connect
from dropgate.persistence.claims import by_partition

STREAM = "bench:{p0}:log"


def _timed(read: Callable[[], Any], events: int) -> tuple[float, Any]:
    started = time.process_time()
    got = read()
    return (time.process_time() - started) * 1e6 / events, got


async def run(args: argparse.Namespace) -> None:
    events = args.calls * args.batch
    with tempfile.TemporaryDirectory(prefix="dropgate-log-reads-") as tmp:
        async with private_redis(Path(tmp), "log-reads") as (url, redis, _pid):
            sha = await redis.script_load(WRITE)
            await write(redis, sha, STREAM, "per_event", args.calls, args.batch)
            await redis.xgroup_create(STREAM, "g", id="0")
            reader = connect(url, max_connections=2, timeout_s=10, pool_wait_s=10)
            try:
                as_sent: Any = await reader.xreadgroup("g", "c", {STREAM: ">"}, count=events)
            finally:
                await reader.aclose()
            parse = Redis.from_url(url).response_callbacks["XREADGROUP"]  # redis-py's own
    partitions = {STREAM: 0}
    ways: dict[str, Callable[[], Any]] = {
        "parsed": lambda: by_partition(parse(as_sent), partitions),
        "as sent": lambda: by_partition(as_sent, partitions),
    }
    results: dict[str, list[float]] = {way: [] for way in ways}
    got: dict[str, Any] = {}
    for rnd in range(args.rounds):
        for way in (list(ways) if rnd % 2 == 0 else list(ways)[::-1]):
            us, got[way] = _timed(ways[way], events)
            results[way].append(us)
        print(f"round {rnd + 1:2d}  " + "  ".join(f"{way} {results[way][-1]:.2f}" for way in ways), flush=True)
        [(_, read_events)] = got["as sent"]
        if got["parsed"] != got["as sent"] or len(read_events) != events or not all(
                isinstance(e.data, OfferPurchase) for e in read_events):
            raise SystemExit("the two ways did not give the same purchases")
    parsed, sent = (statistics.median(results[way]) for way in ways)
    print(f"\nthe reader's CPU µs per event, medians of {args.rounds} rounds of {events:,} entries read at once:")
    print("\n| redis-py's parse, then by_partition | by_partition of the reply as sent | as sent / parsed |")
    print("| --- | --- | --- |")
    print(f"| {parsed:.2f} | {sent:.2f} | {sent / parsed:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
