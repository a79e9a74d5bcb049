"""What decoding a purchase call's arguments costs inside Redis, layout by layout.

    .venv/bin/python -m benchmarks.arg_decode [--runs 3] [--loops 2000] [--batch 64]

``offer_purchase_batch`` takes its requests (ARGV[9]: purchase id, user id, quantity, key
digest, fingerprint) and its finishes (ARGV[10]: purchase id, checkout session id, checkout
URL, key digest, status, body length) as one argument each. This runs one script (no keys,
nothing written) that decodes the same ``--batch`` requests and finishes ``--loops`` times
in each layout, with Redis's clock (``TIME``) around each loop:

- ``json nested``: a JSON array of arrays, through cjson (the layout until 2026-12-07);
- ``json flat``: one JSON array of all the values, through cjson;
- ``msgpack flat``: one msgpack array of all the values, through cmsgpack (the layout now):
  cmsgpack copies a string by its length, where cjson reads it a character at a time.

Each loop reads every entry's first two fields, as the script does; all layouts must read
the same characters, or it exits 1. Prints µs per entry, run by run, and the medians
(BENCHMARKS.md, "The purchase call's arguments as flat msgpack").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Callable

import msgspec
from redis.asyncio import Redis

from benchmarks.common import stores

LAYOUTS = ("json nested", "json flat", "msgpack flat")

_SCRIPT = """
local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end
local width, loops = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for layout = 1, 3 do
  local read = 0
  local a = now()
  for _ = 1, loops do
    if layout == 1 then
      for _, r in ipairs(cjson.decode(ARGV[1])) do read = read + #r[1] + #r[2] end
    else
      local v = layout == 2 and cjson.decode(ARGV[2]) or cmsgpack.unpack(ARGV[3])
      for j = 1, #v, width do read = read + #v[j] + #v[j + 1] end
    end
  end
  out[#out + 1] = now() - a
  out[#out + 1] = read
end
return out
"""

Entry = tuple[str | int, ...]


def requests(batch: int) -> list[Entry]:
    """``batch`` requests of the shape the API sends (ids and 40-character digests)."""
    return [(f"pu_0190f3c2a1b2c3d4e5f6a7b8{i:04d}", f"u_user_{i:06d}", 1, "a" * 40, "b" * 40)
            for i in range(batch)]


def finishes(batch: int) -> list[Entry]:
    """``batch`` finishes of 201s: a Stripe-shaped session id and checkout URL each."""
    session = "cs_test_a1" + "x" * 56
    url = f"https://checkout.stripe.com/c/pay/{session}#fidkdWxOYHwnPyd1blpxYHZxWjA0" + "y" * 60
    return [(f"pu_0190f3c2a1b2c3d4e5f6a7b8{i:04d}", session, url, "", 201, 0) for i in range(batch)]


def encodings(entries: list[Entry]) -> list[bytes]:
    flat = [value for entry in entries for value in entry]
    return [msgspec.json.encode(entries), msgspec.json.encode(flat), msgspec.msgpack.encode(flat)]


async def main(args: argparse.Namespace) -> int:
    shapes: dict[str, Callable[[int], list[Entry]]] = {"requests": requests, "finishes": finishes}
    per_entry: dict[tuple[str, str], list[float]] = {}
    redis = Redis.from_url(stores().redis_url)
    try:
        for run in range(1, args.runs + 1):
            line = []
            for shape, make in shapes.items():
                entries = make(args.batch)
                got = await redis.eval(  # type: ignore[misc]
                    _SCRIPT, 0, *encodings(entries), len(entries[0]), args.loops)
                expected = args.loops * sum(len(str(e[0])) + len(str(e[1])) for e in entries)
                if any(read != expected for read in got[1::2]):
                    print(f"the layouts read different {shape}: {got[1::2]} characters, {expected} expected")
                    return 1
                for layout, us in zip(LAYOUTS, got[0::2], strict=True):
                    per_entry.setdefault((shape, layout), []).append(us / (args.loops * args.batch))
                line.append(f"{shape}: " + ", ".join(
                    f"{layout} {per_entry[shape, layout][-1]:.2f}" for layout in LAYOUTS))
            print(f"run {run} (us per entry): " + "; ".join(line))
        print("\n| us per entry (median) | " + " | ".join(LAYOUTS) + " |")
        print("| --- |" + " --- |" * len(LAYOUTS))
        for shape in shapes:
            print(f"| {shape} | " + " | ".join(
                f"{statistics.median(per_entry[shape, layout]):.2f}" for layout in LAYOUTS) + " |")
    finally:
        await redis.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    sys.exit(asyncio.run(main(parser.parse_args())))
