"""Where a 1,000,000-code upload spends its time, part by part (no HTTP).

    .venv/bin/python -m benchmarks.codes_breakdown [--codes 1000000] [--runs 2]

- ``engine``: ``Codes.upload`` of a streamed file straight through the engine (parse,
  batches of 10,000, the upload script), no HTTP server, no persister.
- ``script steps``: the commands of ``codes_upload-6.lua`` for one fresh upload,
  replayed in an instrumented script that reads Redis's clock between them: the
  median milliseconds per 10,000-code batch of splitting the argument, HMGET, HSET,
  SADD to the available set, a per-upload SADD of every code (what the script did
  before upload marks) and XADD.
- ``insert``: the persister's statement shapes for ``codes.uploaded`` into a fresh
  ``campaign_codes`` table (its migration's DDL, primary key + count index): every
  column as an array (the old shape), everything but the codes as scalars, one
  statement per event (the current shape), and the current shape without the count
  index.

Servers: ``DROPGATE_BENCH_REDIS_URL`` / ``DROPGATE_BENCH_DATABASE_URL``, else the
machine's on loopback, else embedded ones; private prefixes and schemas, removed
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
from redis.asyncio import Redis

from benchmarks.common import Stores, private_runtime, stores

_STEPS = r"""
local function now() local t = redis.call('TIME'); return tonumber(t[1]) * 1e6 + tonumber(t[2]) end
local function each(cmd, key, list, per, pairs)
  for i = 1, #list, per do
    local part = {}
    for j = i, math.min(i + per - 1, #list) do
      part[#part + 1] = list[j]
      if pairs then part[#part + 1] = 'tm|a' end
    end
    redis.call(cmd, key, unpack(part))
  end
end
local out, t = {}, now()
local codes = {}
for code in string.gmatch(ARGV[1], '[^\n]+') do codes[#codes + 1] = code end
local function lap(name) local n = now(); out[#out + 1] = name; out[#out + 1] = n - t; t = n end
lap('split')
each('HMGET', KEYS[1], codes, 4000, false); lap('hmget')
each('HSET', KEYS[1], codes, 2000, true); lap('hset')
each('SADD', KEYS[2], codes, 4000, false); lap('sadd available')
each('SADD', KEYS[3], codes, 4000, false); lap('sadd per-upload set (before marks)')
redis.call('XADD', KEYS[4], '*', 'e', cjson.encode({codes_text = ARGV[1]})); lap('xadd')
return out
"""

_ARRAYS = """INSERT INTO campaign_codes (tenant_id, campaign_id, type, code, uploaded_at, version)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[])
    ON CONFLICT (tenant_id, campaign_id, code) DO NOTHING"""
_SCALARS = """INSERT INTO campaign_codes (tenant_id, campaign_id, type, code, uploaded_at, version)
    SELECT $1, $2, $3, u.code, $5, $6 FROM unnest($4::text[]) AS u (code)
    ON CONFLICT (tenant_id, campaign_id, code) DO NOTHING"""


def _codes(n: int) -> list[bytes]:
    return [b"CODE-%09d" % i for i in range(n)]


async def engine_upload(s: Stores, n: int) -> float:
    body = b"\n".join(_codes(n)) + b"\n"

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 256 * 1024):
            yield body[i:i + 256 * 1024]

    async with private_runtime(s, persister_enabled=False, max_backlog=10_000_000) as rt:
        await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
        started = time.perf_counter()
        result = await rt.codes.upload("bench", "big", "tm", chunks())
        elapsed = time.perf_counter() - started
        assert result.inserted == n, result
    return elapsed


async def script_steps(s: Stores, n: int) -> dict[str, float]:
    redis = Redis.from_url(s.redis_url)
    prefix = "b" + uuid.uuid4().hex[:10]
    keys = [f"{prefix}:{{p0}}:{k}" for k in ("records", "available", "seen", "log")]
    laps: dict[str, list[float]] = {}
    try:
        script = redis.register_script(_STEPS)
        codes = _codes(n)
        for i in range(0, n, 10_000):
            out = await script(keys=keys, args=[b"\n".join(codes[i:i + 10_000])])
            for name, us in zip(out[::2], out[1::2], strict=True):
                laps.setdefault(name.decode(), []).append(int(us) / 1000)
    finally:
        await redis.delete(*keys)
        await redis.aclose()
    return {name: statistics.median(ms) for name, ms in laps.items()}


async def inserts(s: Stores, n: int) -> dict[str, float]:
    ddl = resources.files("dropgate.persistence").joinpath("migrations/0003_codes.sql").read_text()
    schema = "b" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(s.database_url)
    at = datetime.datetime.now(datetime.UTC)
    out: dict[str, float] = {}
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(ddl)
        codes = [c.decode() for c in _codes(n)]
        for shape in ("arrays (before)", "scalars, one statement per event (now)", "now, no count index"):
            await conn.execute("TRUNCATE campaign_codes")
            if shape.startswith("now, no"):
                await conn.execute("DROP INDEX campaign_codes_counts")
            campaign = uuid.uuid4().hex[:8]
            started = time.perf_counter()
            for i in range(0, n, 50_000):  # one persister transaction: a run of 5 events
                async with conn.transaction():
                    for k in range(i, min(i + 50_000, n), 10_000):
                        part = codes[k:k + 10_000]
                        if shape.startswith("arrays"):
                            m = len(part)
                            await conn.execute(_ARRAYS, ["bench"] * m, [campaign] * m, ["tm"] * m, part,
                                               [at] * m, [k] * m)
                        else:
                            await conn.execute(_SCALARS, "bench", campaign, "tm", part, at, k)
            out[shape] = time.perf_counter() - started
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
    return out


async def main(n: int, runs: int) -> None:
    s = stores()
    engine: list[float] = []
    steps: list[dict[str, float]] = []
    insert: list[dict[str, float]] = []
    for run in range(runs):
        engine.append(await engine_upload(s, n))
        steps.append(await script_steps(s, n))
        insert.append(await inserts(s, n))
        print(f"run {run + 1}: engine upload {engine[-1]:.2f} s; script steps (ms per 10,000) "
              + ", ".join(f"{k} {v:.1f}" for k, v in steps[-1].items())
              + "; inserts " + ", ".join(f"{k} {v:.2f} s" for k, v in insert[-1].items()), flush=True)
    print(f"\n{n:,} codes, medians of {runs} runs:")
    print(f"  engine upload (no HTTP, no persister): {statistics.median(engine):.2f} s")
    for name in steps[0]:
        print(f"  script step {name:<40} {statistics.median(r[name] for r in steps):6.1f} ms per 10,000")
    for name in insert[0]:
        print(f"  insert, {name:<40} {statistics.median(r[name] for r in insert):6.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.codes, args.runs))
