"""The cost of the per-request revocation check (issue #21 item 2: at most 3%), under wrk.

    .venv/bin/python -m benchmarks.revocation [--paths offers,invites] [--rounds 7] [--seconds 5]
        [--connections 256]

One server process, switched between two modes from one window to the next (default;
``--processes 2``: two server processes of the same build side by side, as first
measured), in alternating windows (``benchmarks.revisions``' rounds, wrk scripts, data
set-up and report):

- **checked** (reported as "after"): ``dropgate serve`` as shipped. Every authenticated
  request compares its cached key answer's revocation version with the view of the
  process's revocation poller (``engine/revocations.py``; a read issued after the
  request arrived when the last poll is older than half a lease).
- **unchecked** (reported as "before"): the same code, served by this module with
  ``ApiKeys.authenticate`` patched (in that process only) to trust a cached answer for
  its 2 s without the check, and the revocation poller paused (it polls nothing): what
  the hot path cost before revocation was immediate.
  The patch lives here, not behind a setting: no deployment can turn the check off.

Why one process: two processes differ by more than the check (their own Redis keys and
PostgreSQL schema, memory layout, collector history, which core the scheduler gives
them), and a constant few percent between them reads as the check's cost. One process
switched by a signal (SIGUSR1: unchecked, SIGUSR2: checked; the benchmark waits 0.3 s
after it) compares the check with itself and nothing else.

One worker (the patch is not carried into ``--workers`` processes); the load is
one service key of one tenant, so after the first second every request is a cache
hit, the case the check adds to. Reported: requests/s of each and the median of the
per-round ratios "checked / unchecked"; and the server's CPU time per answered request
of each and the median of its per-round ratios, which a loaded machine moves far less
than requests/s (the check's cost is that ratio minus 1).

``--null`` (one process): both modes checked, the method's spread where there is no
difference to find.

``--clock [--clock-other PATH]`` measures instead the clock alone, in-process: CPU per
read under crowds of 1 and 64 on a Redis that answers at once, beside the same
``gather`` of coroutines awaiting nothing (and beside another revision's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks import revisions
from benchmarks.common import Stores, private_settings, settings_env, stores
from benchmarks.revisions import (
    NOOP,
    PATHS,
    Revision,
    Server,
    Window,
    ensure_wrk,
    lua_script,
    measure,
    report,
    start_noop,
    start_prepared,
)

ROOT = Path(__file__).resolve().parent.parent


def serve_unchecked(argv: list[str], *, switched: bool = False) -> int:
    """``dropgate <argv>`` with cached key answers trusted for their TTL (no revocation
    read); ``switched``: only while unchecked, SIGUSR1 turning that on, SIGUSR2 off."""
    from dropgate.engine import apikeys
    from dropgate.engine.apikeys import ApiKeys, Principal

    checked = ApiKeys.authenticate
    mode = {"unchecked": not switched}
    if switched:
        signal.signal(signal.SIGUSR1, lambda *_: mode.update(unchecked=True))
        signal.signal(signal.SIGUSR2, lambda *_: mode.update(unchecked=False))

    async def authenticate(self: ApiKeys, token: str) -> Principal | None:
        # unchecked: the revocation poller idles too (its polls are part of the check's cost)
        self.clock.paused = mode["unchecked"]
        if mode["unchecked"]:
            hit = self._cache.get(token)
            if hit is not None and hit.expires > time.monotonic() and hit.principal is not None:
                return hit.principal
        return await checked(self, token)

    apikeys.ApiKeys.authenticate = authenticate  # type: ignore[method-assign]
    from dropgate.cli import main

    return main(argv)


REDIS_DELTAS: dict[int, dict[str, tuple[int, int]]] = {}  # id(window) -> command -> (calls, usec)


async def run_switched(args: argparse.Namespace, s: Stores, tmp: Path) -> tuple[list[Server], Server]:
    """One server process; "before" and "after" are its two modes, set before each window."""
    async with contextlib.AsyncExitStack() as stack:
        settings = await stack.enter_async_context(private_settings(s))
        env = settings_env(settings) | {"DROPGATE_TENANT_CONCURRENCY": str(revisions.TENANT_CONCURRENCY)}
        argv = [sys.executable, "-m", "benchmarks.revocation", "--switched", "serve", "--host", "127.0.0.1"]
        server = await start_prepared(stack, "after", argv, env, ROOT, tmp / "switched.log", settings.admin_key,
                                      args)
        before = dataclasses.replace(server, name="before", windows={})
        pairs = [before, server]
        noop = await start_noop(stack, tmp)
        plain_wrk = revisions.wrk
        redis = Redis.from_url(s.redis_url)
        stack.push_async_callback(redis.aclose)

        windows = {True: 0, False: 0}  # windows run so far, per mode ("before" True)

        async def switched_wrk(args: argparse.Namespace, target: Server, *rest: Any) -> Window:
            if target not in pairs:
                return await plain_wrk(args, target, *rest)
            unchecked = target is before and not args.null
            os.kill(server.proc.pid, signal.SIGUSR1 if unchecked else signal.SIGUSR2)
            await asyncio.sleep(0.3)
            # one server's state: each window its own users; the suffix alternates between
            # the modes from one window to the next (a null run showed the user ids alone
            # moving invites' req/s by 0.7x: they pick partitions and batches)
            p, script, tag, seconds = rest
            windows[target is before] += 1
            suffix = "ab"[(windows[target is before] + (target is before)) % 2]
            stats = await redis.info("commandstats")
            w = await plain_wrk(args, target, p, script, f"{tag}{suffix}", seconds)
            after = await redis.info("commandstats")
            REDIS_DELTAS[id(w)] = {name: (after[name]["calls"] - stats.get(name, {}).get("calls", 0),
                                          after[name]["usec"] - stats.get(name, {}).get("usec", 0))
                                   for name in after}
            return w

        revisions.wrk = switched_wrk  # type: ignore[assignment]
        try:
            await measure(args, pairs, noop, tmp)
        finally:
            revisions.wrk = plain_wrk
    return pairs, noop


async def run(args: argparse.Namespace, s: Stores, tmp: Path) -> tuple[list[Server], Server]:
    if args.processes == 1:
        return await run_switched(args, s, tmp)
    async with contextlib.AsyncExitStack() as stack:
        pairs: list[Server] = []
        for label, module in (("before", ["-m", "benchmarks.revocation", "--unchecked"]),
                              ("after", ["-m", "dropgate"])):
            settings = await stack.enter_async_context(private_settings(s))
            env = settings_env(settings) | {"DROPGATE_TENANT_CONCURRENCY": str(revisions.TENANT_CONCURRENCY)}
            argv = [sys.executable, *module, "serve", "--host", "127.0.0.1"]
            pairs.append(await start_prepared(stack, label, argv, env, ROOT, tmp / f"{label}.log",
                                              settings.admin_key, args))
        noop = await start_noop(stack, tmp)
        await measure(args, pairs, noop, tmp)
    return pairs, noop


def redis_report(args: argparse.Namespace, pairs: list[Server]) -> None:
    """Redis commands per answered request in each mode (INFO commandstats over each
    window: exact on a private Redis; on a shared one, others' commands are counted too)."""
    print("\nRedis per answered request (INFO commandstats over each window, medians of the rounds):\n")
    print("| path | mode | GET calls | all calls | Redis usec (all commands) |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.paths:
        for server in pairs:
            rows = [(REDIS_DELTAS[id(w)], w.requests) for w in server.windows[path] if id(w) in REDIS_DELTAS]
            if not rows:
                continue
            get = statistics.median(d.get("cmdstat_get", (0, 0))[0] / n for d, n in rows)
            calls = statistics.median(sum(c for c, _ in d.values()) / n for d, n in rows)
            usec = statistics.median(sum(u for _, u in d.values()) / n for d, n in rows)
            mode = "unchecked" if server.name == "before" and not args.null else "checked"
            print(f"| {path} | {mode} | {get:.3f} | {calls:.2f} | {usec:.1f} |")


def cpu_report(args: argparse.Namespace, pairs: list[Server]) -> None:
    """Server CPU per answered request, and its per-round ratio checked / unchecked.

    Why next to requests/s: on a machine whose load is many times its cores, a server
    gets a changing share of a core, and requests/s follows that share more than the
    code; CPU time per request follows the code."""
    unchecked, checked = pairs
    print("\nserver CPU per request (us), medians of the rounds; ratio = median of the per-round "
          "ratios checked / unchecked (range):\n")
    print("| path | unchecked | checked | checked / unchecked | cost of the check |")
    print("| --- | --- | --- | --- | --- |")
    def us(server: Server, path: str) -> list[float]:
        return [w.server_cores / w.per_s * 1e6 for w in server.windows[path]]

    for path in args.paths:
        ratios = [c / u for u, c in zip(us(unchecked, path), us(checked, path), strict=True)]
        med = statistics.median(ratios)
        print(f"| {path} | {statistics.median(us(unchecked, path)):,.0f} | {statistics.median(us(checked, path)):,.0f} "
              f"| **{med:.3f}** ({min(ratios):.3f}-{max(ratios):.3f}) | {100 * (med - 1):+.1f}% |")
        print(f"  per round: unchecked {', '.join(f'{v:.0f}' for v in us(unchecked, path))}; "
              f"checked {', '.join(f'{v:.0f}' for v in us(checked, path))}")


async def clock_costs(other: str | None, crowd: int, reads: int = 20_000) -> dict[str, float]:
    """In-process CPU per ``RevocationClock.read`` (us) on a Redis that answers at once,
    next to the same ``gather`` of coroutines awaiting nothing; ``other``: the path of
    another revision's ``engine/revocations.py`` to measure beside this one."""
    import importlib.util

    from dropgate.engine import revocations
    from dropgate.engine.keys import Keys

    class Instant:
        async def get(self, key: str) -> bytes:
            await asyncio.sleep(0)
            return b"3"

    modules = {"this tree": revocations}
    if other:
        spec = importlib.util.spec_from_file_location("other_revocations", other)
        assert spec is not None and spec.loader is not None
        modules["other"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules["other"])

    async def nothing() -> int:
        return 3

    costs: dict[str, list[float]] = {name: [] for name in [*modules, "baseline"]}
    for _ in range(5):
        for name, module in modules.items():
            clock = module.RevocationClock(Instant(), Keys("t", 4))
            started = time.process_time()
            for _ in range(reads // crowd):
                await asyncio.gather(*(clock.read(1) for _ in range(crowd)))
            costs[name].append((time.process_time() - started) / reads * 1e6)
        started = time.process_time()
        for _ in range(reads // crowd):
            await asyncio.gather(*(nothing() for _ in range(crowd)))
        costs["baseline"].append((time.process_time() - started) / reads * 1e6)
    return {name: statistics.median(v) for name, v in costs.items()}


def main(args: argparse.Namespace) -> int:
    ensure_wrk()
    print(f"command: {shlex.join(['.venv/bin/python', '-m', 'benchmarks.revocation', *sys.argv[1:]])}")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {wrk_version.split(' [')[0]}")
    if args.null:
        print("NULL RUN: before and after are both checked (the method's own spread)", flush=True)
    else:
        print("before = unchecked (cached keys trusted for 2 s), after = checked (as shipped); same build, "
              + ("one process switched by signals" if args.processes == 1 else "one process each"), flush=True)
    s = stores()
    try:
        with tempfile.TemporaryDirectory(prefix="dropgate-revocation-") as tmp_name:
            tmp = Path(tmp_name)
            for name, p in [*PATHS.items(), ("noop", NOOP)]:
                (tmp / f"{name}.lua").write_text(lua_script(p))
            pairs, noop = asyncio.run(run(args, s, tmp))
    finally:
        if s.stack is not None:
            s.stack.close()
    labels = [Revision("before", "unchecked", ROOT, sha="same build"),
              Revision("after", "checked", ROOT, sha="same build")]
    clean = report(args, labels, pairs, noop)
    cpu_report(args, pairs)
    if args.processes == 1:
        redis_report(args, pairs)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if not clean:
        print("FLAGGED: some requests did not succeed (see the last column); these figures do not compare")
    return 0 if clean else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--unchecked"]:
        sys.exit(serve_unchecked(sys.argv[2:]))
    if sys.argv[1:2] == ["--switched"]:
        sys.exit(serve_unchecked(sys.argv[2:], switched=True))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--paths", default="offers,invites", help="comma-separated: offers, codes, invites")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per window (whole seconds)")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--processes", type=int, choices=(1, 2), default=1,
                        help="1: one server switched between checked and unchecked by a signal before each "
                             "window; 2: a server process of each")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--null", action="store_true",
                        help="with --processes 1: both modes checked, to see the method's spread at no difference")
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes per upload (topped up as needed)")
    parser.add_argument("--no-persister", action="store_true", help="serve --no-persister (default: persister on)")
    parser.add_argument("--clock", action="store_true",
                        help="instead: CPU per RevocationClock.read in-process (uvloop, a Redis that answers "
                             "at once), crowds of 1 and 64, medians of 5")
    parser.add_argument("--clock-other", default=None, metavar="PATH",
                        help="with --clock: another revision's engine/revocations.py, measured beside")
    parsed = parser.parse_args()
    if parsed.clock:
        import uvloop

        for crowd in (1, 64):
            costs = uvloop.run(clock_costs(parsed.clock_other, crowd))
            print(f"crowd {crowd:3d}: " + ", ".join(f"{k} {v:.2f} us" for k, v in costs.items()))
        sys.exit(0)
    parsed.paths = [p.strip() for p in parsed.paths.split(",") if p.strip()]
    if not parsed.paths or any(p not in PATHS for p in parsed.paths):
        parser.error(f"--paths: a comma-separated subset of {', '.join(PATHS)}")
    if parsed.null and parsed.processes != 1:
        parser.error("--null needs --processes 1")
    if parsed.processes == 1 and any(PATHS[p].reserves for p in parsed.paths):
        parser.error("--processes 1 cannot count one server's codes for two modes: --processes 2 for codes")
    sys.exit(main(parsed))
