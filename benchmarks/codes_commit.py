"""How long a staged upload's commit holds Redis: ``codes_commit-5.lua`` of ``--before``
against this tree's, side by side.

    .venv/bin/python -m benchmarks.codes_commit [--before bb25c94] [--runs 3]
        [--cases 1000000:10000,10000:1000000,100000:100000,100000:30000,100000:40000,0:100000]

Why: the commit is one script call, so every other command of every tenant waits for
it. ``bb25c94``'s script joined the staged set to the pool with one ``SUNIONSTORE``,
which rebuilds the whole pool: its cost grew with the pool, not with the upload. A
case ``POOL:UPLOAD`` builds an available set of POOL codes and a staged set of UPLOAD
codes (pipelined ``SADD``s, under a private key prefix of the machine's Redis or
``DROPGATE_BENCH_REDIS_URL``), then times one ``EVALSHA`` of each revision's script
(the client's clock around the call; the round trip is a fraction of a millisecond),
checks that the pool then holds POOL + UPLOAD codes and that the staged set is gone,
and deletes the keys. Revisions alternate within each run; medians of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from benchmarks.common import stores
from dropgate.engine.keys import Keys
from dropgate.engine.scripts import load_sources, sources

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "codes_commit-5.lua"


def script_of(revision: str) -> str:
    """The commit script of a git revision, or of this tree (``WORKTREE``), includes expanded
    (a revision's file is read by the same loader, its ``lib/`` includes from this tree)."""
    if revision == "WORKTREE":
        return sources()["codes_commit"].text
    raw = subprocess.run(["git", "show", f"{revision}:dropgate/engine/lua/{SCRIPT}"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / SCRIPT).write_text(raw)
        return load_sources(Path(folder))["codes_commit"].text


async def fill(redis: Redis, key: str, n: int, tag: str) -> None:
    chunk = 10_000
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, n, chunk):
            pipe.sadd(key, *(f"{tag}{i:09d}" for i in range(start, min(n, start + chunk))))
        await pipe.execute()


async def one(redis: Redis, sha: str, pooled: int, uploaded: int) -> float:
    """Seconds one commit of UPLOAD staged codes into a pool of POOL held Redis."""
    tk = Keys(f"bcc{uuid.uuid4().hex[:10]}", 1).tenant("bench")
    log, meta, available = tk.log, tk.codes_meta("c"), tk.codes_available("c", "tm")
    staged, seen = tk.codes_staged("c", "u", "tm"), tk.codes_upload("c", "u")
    try:
        await fill(redis, available, pooled, "P")
        await fill(redis, staged, uploaded, "U")
        await redis.expire(staged, 3600)
        await redis.hset(meta, mapping={"p:1": "u", "created_ms": 0})
        started = time.perf_counter()
        await redis.evalsha(sha, 5, log, meta, available, staged, seen, "bench", "c", "tm", 1, "1")
        took = time.perf_counter() - started
        assert await redis.scard(available) == pooled + uploaded, "the pool is not the union"
        assert not await redis.exists(staged), "the staged set was left behind"
        assert await redis.ttl(available) == -1, "the pool took the staged set's expiry"
        return took
    finally:
        await redis.delete(log, meta, available, staged, seen)


async def main(args: argparse.Namespace) -> None:
    redis_url = stores().redis_url
    redis = Redis.from_url(redis_url)
    revisions = {args.before: script_of(args.before), "this tree": script_of("WORKTREE")}
    shas = {name: await redis.script_load(text) for name, text in revisions.items()}
    cases = [tuple(int(x) for x in c.split(":")) for c in args.cases.split(",")]
    print(f"codes_commit: {args.before} against this tree; {args.runs} runs; Redis {redis_url}")
    times: dict[tuple[str, int, int], list[float]] = {}
    for run in range(args.runs):
        for pooled, uploaded in cases:
            order = list(shas) if run % 2 == 0 else list(shas)[::-1]
            for name in order:
                took = await one(redis, shas[name], pooled, uploaded)
                times.setdefault((name, pooled, uploaded), []).append(took)
                print(f"run {run + 1} pool {pooled:>9,} upload {uploaded:>9,} {name:>10}: {took * 1000:8.1f} ms",
                      flush=True)
    print(f"\n| pool | upload | {args.before} (SUNIONSTORE) | this tree | this tree / {args.before} |")
    print("| --- | --- | --- | --- | --- |")
    for pooled, uploaded in cases:
        before = statistics.median(times[(args.before, pooled, uploaded)])
        after = statistics.median(times[("this tree", pooled, uploaded)])
        print(f"| {pooled:,} | {uploaded:,} | {before * 1000:.1f} ms | {after * 1000:.1f} ms | {after / before:.2f}x |")
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="bb25c94", help="the git revision compared with this tree")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", help="comma-separated POOL:UPLOAD sizes",
                        default="1000000:10000,10000:1000000,100000:100000,100000:30000,100000:40000,0:100000")
    asyncio.run(main(parser.parse_args()))
