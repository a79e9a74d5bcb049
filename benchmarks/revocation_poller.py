"""The revocation poller alone: CPU per second of one RevocationClock polling 16 partitions every 50 ms
(BENCHMARKS.md, *The wait moved to revoke*). Run: .venv/bin/python benchmarks/revocation_poller.py"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.revocations import RevocationClock
from dropgate.engine.scripts import Scripts


async def main() -> None:
    r = Redis.from_url("redis://127.0.0.1:6379/0")
    scripts = Scripts(r)
    await scripts.load_all()
    keys = Keys("s25pollbench", 16)
    clock = RevocationClock(r, keys, scripts, poll_ms=50, lease_ms=2000)
    clock.view()
    await asyncio.sleep(1)
    c0, p0, t0 = time.process_time(), clock.polls, time.monotonic()
    await asyncio.sleep(10)
    c1, p1, t1 = time.process_time(), clock.polls, time.monotonic()
    print(f"16 partitions, poll 50 ms: {(p1-p0)/(t1-t0):.1f} polls/s, {(c1-c0)/(t1-t0)*1000:.1f} ms CPU per s "
          f"({(c1-c0)/(p1-p0)*1e6:.0f} us per poll)")
    await clock.close()
    await r.delete(*[keys.api_key_pollers(p) for p in range(16)])
    await r.aclose()

if __name__ == "__main__":
    asyncio.run(main())
