"""What decoding a purchase call's requests costs inside Redis: a nested array against a flat one.

    .venv/bin/python -m benchmarks.arg_decode [--runs 3] [--loops 2000] [--batch 64]

``offer_purchase_batch`` takes its requests as one JSON array of ``[purchase id, user id,
quantity, key digest, fingerprint]`` arrays (ARGV[9]), and cjson makes a Lua table for
each of them. This runs one script (no keys, nothing written) that decodes the same
``--batch`` requests ``--loops`` times each way, nested and flat (one array of five values
a request), reading each request's first field as the script does (both ways must read
the same characters, or it exits 1), with Redis's clock (``TIME``) around each loop.
Prints µs per request each way, run by run: what the
arguments as flat arrays would save (BENCHMARKS.md, "Three writes a purchase no longer
makes in Redis").
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec
from redis.asyncio import Redis

from benchmarks.common import stores

_SCRIPT = """
local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end
local loops = tonumber(ARGV[3])
local nested, flat = 0, 0
local a = now()
for _ = 1, loops do
  for _, r in ipairs(cjson.decode(ARGV[1])) do nested = nested + #r[1] end
end
local b = now()
for _ = 1, loops do
  local r = cjson.decode(ARGV[2])
  for j = 1, #r, 5 do flat = flat + #r[j] end
end
return {b - a, now() - b, nested, flat}
"""


def requests(batch: int) -> list[tuple[str, str, int, str, str]]:
    """``batch`` requests of the shape the API sends (ids and 40-character digests)."""
    return [(f"pu_0190f3c2a1b2c3d4e5f6a7b8{i:04d}", f"u_user_{i:06d}", 1, "a" * 40, "b" * 40)
            for i in range(batch)]


async def main(args: argparse.Namespace) -> int:
    held = requests(args.batch)
    nested = msgspec.json.encode(held)
    flat = msgspec.json.encode([value for request in held for value in request])
    redis = Redis.from_url(stores().redis_url)
    try:
        for run in range(1, args.runs + 1):
            nested_us, flat_us, nested_read, flat_read = await redis.eval(  # type: ignore[misc]
                _SCRIPT, 0, nested, flat, args.loops)
            if nested_read != flat_read or nested_read != args.loops * sum(len(r[0]) for r in held):
                print(f"the two decodings read different requests: {nested_read} and {flat_read} characters")
                return 1
            per = args.loops * args.batch
            print(f"run {run}: nested {nested_us / per:.2f} us per request, flat {flat_us / per:.2f}")
    finally:
        await redis.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    sys.exit(asyncio.run(main(parser.parse_args())))
