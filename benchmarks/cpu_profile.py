"""Where each microsecond of a hot-path request goes: CPU per request side by side, and a profile.

    .venv/bin/python -m benchmarks.cpu_profile [--before REV] [--after REV|WORKTREE]
        [--paths invites,offers] [--rounds 4] [--seconds 5] [--connections 256]
        [--profile-seconds 0] [--rate 1000] [--out DIR]

Why (issue #19): the target is CPU per request against a bare aiohttp no-op POST, and
a change to the request path is kept only when it lowers that figure, measured side by
side in one run on this noisy machine. Each revision (``git archive`` of ``--before``;
``--after`` defaults to this working tree) runs ``dropgate serve --no-persister`` as
``benchmarks.hotpaths`` does, with ``dropgate persister`` in a process of its own (its
CPU is not counted), each on a private key prefix and schema; the bare no-op of
``benchmarks.revisions --noop`` runs beside them. Every round runs one wrk window per
path and server, the revisions' order alternating from round to round; the CPU of a
window is the server process's ``utime + stime`` (``/proc/<pid>/stat``) over it, per
request, and of it the kernel's part (``stime``: its system calls, and the interrupts the
tick charges it: a server that talks to Redis as well as to wrk makes more); Redis's CPU over the
window (its ``INFO cpu``), per request, beside it: the share of a request's cost that a
change to the script or the batching moves, on the same two cores.
Medians of the rounds, and the median of the per-round after/before ratios.

``--profile-seconds N`` (N > 0): after the rounds, one more wrk window of N seconds
per path and dropgate server, sampled by ``py-spy record --native off --nonblocking``
(not a project dependency: ``pip install py-spy`` into the venv to measure). py-spy
counts only the samples where the thread is not idle; each category's share of them
is multiplied by the CPU per request measured over that same window, so the table
reads in microseconds of the API process per request. A sample goes to the innermost
frame that names a category (see ``CATEGORIES``); the C code (msgspec, hiredis,
uvloop, aiohttp's C parser and writer) counts in the Python frame that called it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import linecache
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    FAST_HOST_US,
    halt_poll,
    host_speed_us,
    perf_record,
    private_settings,
    settings_env,
    stores,
)
from benchmarks.revisions import (
    NOOP,
    PATHS,
    TENANT_CONCURRENCY,
    Revision,
    Server,
    Window,
    cpu_s,
    ensure_wrk,
    export,
    imported_from,
    lua_script,
    prepare,
    start,
    upload,
    wrk,
)
from benchmarks.storecpu import redis_cpu_s

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Side:
    """One measured server: a dropgate revision or the no-op."""

    name: str
    server: Server
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    kernel_us: dict[str, list[float]] = field(default_factory=dict)  # of cpu_us, in the kernel (stime)
    redis_us: dict[str, list[float]] = field(default_factory=dict)  # Redis's CPU per request, per window
    per_call: dict[str, list[float]] = field(default_factory=dict)  # items per script call, per window
    windows: dict[str, list[Window]] = field(default_factory=dict)


# (category, test on the frame's file, optional test on the source line): the innermost frame
# that matches names the sample's category
CATEGORIES: list[tuple[str, str, str | None]] = [
    ("body decode (msgspec)", "dropgate/http/routing.py", r"decoder\.decode|request\.read"),
    ("response encode (msgspec) + Response", "dropgate/http/routing.py", r"encode|web\.Response"),
    ("auth: key cache + revocation check", "dropgate/http/auth.py", None),
    ("auth: key cache + revocation check", "dropgate/engine/apikeys.py", None),
    ("auth: key cache + revocation check", "dropgate/engine/revocations.py", None),
    ("admission", "dropgate/http/admission.py", None),
    ("metrics", "dropgate/http/metrics.py", None),
    ("metrics", "prometheus_client/", None),
    ("middleware (request id, error shape)", "dropgate/http/middleware.py", None),
    ("idempotency (replay by key)", "dropgate/http/idempotency.py", None),
    ("idempotency (replay by key)", "dropgate/engine/idempotency.py", None),
    ("Batcher (queue, drain task, futures)", "dropgate/engine/actors/batcher.py", None),
    ("redis-py (pack, send, read, parse: hiredis)", "/redis/", None),
    ("engine (script args, reply decode)", "dropgate/engine/", None),
    ("engine (script args, reply decode)", "dropgate/checkout/", None),
    ("route handler + routing glue", "dropgate/http/", None),
    ("background tasks (dispatcher, sweepers, metrics sync, serve)", "dropgate/webhooks/", None),
    ("aiohttp response (headers, write)", "aiohttp/web_response.py", None),
    ("aiohttp response (headers, write)", "aiohttp/http_writer.py", None),
    ("aiohttp response (headers, write)", "aiohttp/helpers.py", None),
    ("aiohttp parse + dispatch (protocol, request, router)", "aiohttp/", None),
    ("aiohttp parse + dispatch (protocol, request, router)", "multidict/", None),
    ("aiohttp parse + dispatch (protocol, request, router)", "yarl/", None),
    ("event loop + tasks (asyncio, uvloop)", "asyncio/", None),
    ("event loop + tasks (asyncio, uvloop)", "uvloop/", None),
    ("event loop + tasks (asyncio, uvloop)", "runners.py", None),
    ("background tasks (dispatcher, sweepers, metrics sync, serve)", "dropgate/", None),
    ("no-op handler", "benchmarks/revisions.py", None),
]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def _category(frames: list[str]) -> str:
    if frames and "cpu_sampler.py" in frames[-1]:
        return "profiler itself"
    for frame in reversed(frames):  # innermost first
        m = _FRAME.match(frame)
        if m is None:
            continue
        path, line = m["file"], int(m["line"])
        for name, where, text in CATEGORIES:
            if where in path:
                if text is not None:
                    source = linecache.getline(path, line) if path.startswith("/") else ""
                    if not re.search(text, source):
                        continue
                return name
    return "other (" + (frames[-1] if frames else "?") + ")"


def breakdown(raw: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """(samples, samples per category, samples per innermost frame) of a py-spy raw file."""
    total, by_cat, by_leaf = 0, collections.Counter[str](), collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        total += n
        by_cat[_category(frames)] += n
        by_leaf[frames[-1] if frames else "?"] += n
    return total, dict(by_cat), dict(by_leaf)


# each path's coalescing queue, as dropgate's /metrics names it
QUEUES = {"invites": "invite_redemptions", "promos": "promo_redemptions", "codes": "code_reservations",
          "offers": "offer_purchases"}


async def batch_counts(url: str, queue: str) -> tuple[float, float] | None:
    """``queue``'s script calls and the items they carried so far (dropgate's ``/metrics``),
    or None where the server exports none (the no-op, the floor, a revision before them)."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
        text = await r.text() if r.status == 200 else ""
    found = {sample.name: sample.value for family in text_string_to_metric_families(text)
             for sample in family.samples if sample.labels == {"queue": queue}}
    calls, items = found.get("dropgate_batches_total"), found.get("dropgate_batched_items_total")
    return None if calls is None or items is None else (calls, items)


async def window(side: Side, path: str, tmp: Path, args: argparse.Namespace, tag: str, seconds: int,
                 fastest: list[float]) -> tuple[Window, float, float, float | None]:
    """One wrk window: its result, the server's CPU and Redis's per request, and the items
    per script call of the path's coalescing queue over it (None where not exported)."""
    route = NOOP if side.name == "no-op" else PATHS[path]
    server = side.server
    reserves = route.reserves and not side.name.startswith("floor")  # the floor holds no codes
    if reserves:
        need = int(2 * max(fastest[0], 20_000) * seconds)
        if server.codes_left < need:
            await upload(server, max(args.codes, need))
    counted = side.name != "no-op" and not side.name.startswith("floor")
    batched = await batch_counts(server.url, QUEUES[path]) if counted else None
    before, redis_before = cpu_s(server.proc.pid), await redis_cpu_at(args.redis_url)
    w = await wrk(args, server, route, tmp / f"{'noop' if side.name == 'no-op' else path}.lua", tag, seconds)
    cpu = (cpu_s(server.proc.pid) - before) * 1e6 / max(1, w.requests)
    redis_us = (await redis_cpu_at(args.redis_url) - redis_before) * 1e6 / max(1, w.requests)
    per_call: float | None = None
    if batched is not None:  # after the CPU was read: the scrapes are not the window's work
        now = await batch_counts(server.url, QUEUES[path])
        if now is not None and now[0] > batched[0]:
            per_call = (now[1] - batched[1]) / (now[0] - batched[0])
    if reserves:
        server.codes_left -= w.requests
        fastest[0] = max(fastest[0], w.per_s)
    return w, cpu, redis_us, per_call


SAMPLER = ROOT / "benchmarks" / "cpu_sampler.py"


async def redis_cpu_at(url: str) -> float:
    """Redis's CPU seconds so far (``storecpu.redis_cpu_s``): a window's share of a request's
    cost on the machine's cores besides the server's (on a shared Redis, with the other
    servers' background calls and whatever else it served meanwhile)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        return await redis_cpu_s(redis)
    finally:
        await redis.aclose()


async def commandstats(url: str) -> dict[str, int]:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        info = await redis.info("commandstats")
    finally:
        await redis.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


async def profile(side: Side, path: str, tmp: Path, args: argparse.Namespace, fastest: list[float]) -> None:
    """One wrk window sampled by the CPU-time sampler (``cpu_sampler.py``) or py-spy, and by
    ``perf`` (per shared object: kernel, interpreter, C extensions) when asked."""
    raw = tmp / f"{side.name}-{path}.{args.profiler}.raw"
    pid = side.server.proc.pid
    spy = None
    if args.profiler == "py-spy":
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", str(args.rate),
            "--nonblocking", "--format", "raw", "--duration", str(args.profile_seconds + 2), "--output", str(raw),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        await asyncio.sleep(1.0)  # py-spy attached before the window starts
    else:
        written = tmp / f"{side.name}.sampler.raw"
        written.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
    perf = None
    if args.perf:
        perf = await perf_record(pid, args.profile_seconds, Path(str(raw) + ".perf"))
    stats_before = await commandstats(args.redis_url)
    w, cpu, _, _ = await window(side, path, tmp, args, f"{path[0]}p", args.profile_seconds, fastest)
    stats = {k: v - stats_before.get(k, 0) for k, v in (await commandstats(args.redis_url)).items()}
    if spy is not None:
        await spy.communicate()
    else:
        os.kill(pid, signal.SIGUSR2)
        for _ in range(100):
            if written.exists():
                written.rename(raw)
                break
            await asyncio.sleep(0.1)
    if not raw.exists():
        print(f"no samples written for {side.name} {path}")
        return
    if args.out:
        shutil.copy(raw, Path(args.out) / raw.name)
    total, by_cat, by_leaf = breakdown(raw)
    own = by_cat.pop("profiler itself", 0)
    busy = total - own
    cpu_net = cpu * busy / total if args.profiler == "sampler" else cpu  # the sampler's own CPU taken out
    print(f"\n### {path}, {side.name}: {w.per_s:,.0f} req/s, CPU {cpu:.1f} us/request over the profiled "
          f"window ({w.server_cores:.2f} cores), {cpu_net:.1f} without the profiler's own samples; "
          f"{args.profiler}: {total:,} samples ({own:,} in the profiler)"
          + (f"; ERRORS {w.problems}" if w.problems else "") + "\n")
    busiest = [(stats.get(name, 0), name) for name in ("evalsha", "get", "mget", "eval")]
    if side.name != "no-op":
        print("Redis calls per request over the window (INFO commandstats; on a shared Redis, others' "
              "calls too): " + ", ".join(f"{name} {n / max(1, w.requests):.3f}" for n, name in busiest) + "\n")
    print("| where | share | us/request |\n| --- | --- | --- |")
    for name, n in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100 * n / busy:.1f}% | {cpu_net * n / busy:.1f} |")
    print(f"| total | 100% | {cpu_net:.1f} |")
    print("\ninnermost frames (top 40, us/request):")
    for name, n in sorted(by_leaf.items(), key=lambda kv: -kv[1])[:40]:
        print(f"  {cpu_net * n / busy:6.2f}  {name}")
    if perf is not None:
        await perf.wait()
        report_out = subprocess.run(["perf", "report", "-i", str(raw) + ".perf", "--sort", "dso", "--stdio"],
                                    capture_output=True, text=True).stdout
        print("\nperf (cpu-clock) by shared object, us/request over the same window:")
        for line in report_out.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
            if m and float(m[1]) >= 0.5:
                print(f"  {cpu * float(m[1]) / 100:6.1f}  {m[1]:>6}%  {m[2]}")


async def run(args: argparse.Namespace, revs: list[Revision], tmp: Path) -> list[Side]:
    s = stores()
    args.redis_url = s.redis_url
    sides: list[Side] = []
    fastest = [0.0]
    wrap = [str(SAMPLER)] if args.profile_seconds and args.profiler == "sampler" else ["-m"]
    async with contextlib.AsyncExitStack() as stack:
        if s.stack is not None:
            stack.callback(s.stack.close)
        # (label, the server's command after the interpreter, the source folder, its environment's base):
        # each revision's ``dropgate serve``, then ``benchmarks.bare`` on this working tree when asked
        dropgates = [(r.label, [*r.module[1:], "serve", "--host", "127.0.0.1", "--no-persister"], r)
                     for r in revs]
        if args.bare:
            dropgates.append(("bare", ["benchmarks.bare"], Revision("bare", "WORKTREE", ROOT)))
        for label, command, r in dropgates:
            settings = await stack.enter_async_context(private_settings(s))
            env = r.server_env(settings_env(settings) | {"DROPGATE_PAYMENT_PROVIDER": "sandbox",
                                                         "DROPGATE_TENANT_CONCURRENCY": str(TENANT_CONCURRENCY)})
            env |= {"DROPGATE_SAMPLER_OUT": str(tmp / f"{label}.sampler.raw")}
            server = await start(label, [sys.executable, *wrap, *command], env, r.folder, tmp / f"{label}.log")
            stack.callback(server.stop)
            with (tmp / f"{label}-persister.log").open("wb") as err:
                persister = subprocess.Popen([sys.executable, *r.module, "persister"], env=env, cwd=r.folder,
                                             stdout=subprocess.DEVNULL, stderr=err)
            stack.callback(Server(f"{label}-persister", persister, "").stop)
            assert settings.admin_key is not None
            await prepare(server, settings.admin_key, args.paths, args.codes)
            sides.append(Side(label, server))
        floors: list[tuple[str, list[str]]] = ([("floor", [])] if args.floor else []) + \
            ([("floor-norev", ["--no-revocation"])] if args.floor_no_revocation else [])
        for name, extra in floors:
            floor = await start(name, [sys.executable, *wrap, "benchmarks.floor", "--redis", s.redis_url,
                                       "--prefix", "floor" + uuid.uuid4().hex[:8], *extra],
                                dict(os.environ) | {"DROPGATE_SAMPLER_OUT": str(tmp / f"{name}.sampler.raw")},
                                ROOT, tmp / f"{name}.log")
            floor.key = "dg_floor"
            stack.callback(floor.stop)
            sides.append(Side(name, floor))
        noop = await start("no-op", [sys.executable, *wrap, "benchmarks.revisions", "--noop"],
                           dict(os.environ) | {"DROPGATE_SAMPLER_OUT": str(tmp / "no-op.sampler.raw")},
                           ROOT, tmp / "noop.log")
        stack.callback(noop.stop)
        sides.append(Side("no-op", noop))
        for path in args.paths:  # warm-up: key caches, script loads, first connections
            for side in sides:
                await window(side, path, tmp, args, f"{path[0]}w", 2, fastest)
        for rnd in range(args.rounds):
            for path in args.paths:
                revisions = sides[:-1] if rnd % 2 == 0 else sides[-2::-1]
                for side in [*revisions, sides[-1]]:
                    w, cpu, redis_us, per_call = await window(side, path, tmp, args, f"{path[0]}{rnd}",
                                                              args.seconds, fastest)
                    side.cpu_us.setdefault(path, []).append(cpu)
                    kernel = cpu * w.server_system_cores / w.server_cores if w.server_cores else 0.0
                    side.kernel_us.setdefault(path, []).append(kernel)
                    side.redis_us.setdefault(path, []).append(redis_us)
                    side.windows.setdefault(path, []).append(w)
                    if per_call is not None:
                        side.per_call.setdefault(path, []).append(per_call)
                    print(f"round {rnd + 1} {path:8s} {side.name:7s} {w.per_s:9,.0f}/s  p99 {w.p99_ms:7.1f} ms  "
                          f"CPU {cpu:6.1f} us/req (in the kernel {kernel:5.1f}; {w.server_cores:.2f} cores, "
                          f"waiting for one {w.server_waiting:.2f})"
                          + (f"  {per_call:.1f} items per script call" if per_call is not None else "")
                          + (f"  ERRORS {w.problems}" if w.problems else ""), flush=True)
        if args.profile_seconds:
            for path in args.paths:
                for side in sides:
                    await profile(side, path, tmp, args, fastest)
    return sides


def report(args: argparse.Namespace, sides: list[Side]) -> None:
    if not args.rounds:
        return
    noop = sides[-1]
    print(f"\n{args.rounds} rounds of {args.seconds} s, wrk -t{args.threads} -c{args.connections}; medians "
          "(ratios: medians of the per-round ratios):\n")
    print("| path | server | req/s | CPU us/req | of it in the kernel | CPU efficiency (no-op = 1) | p99 "
          "| per-round CPU us/req | Redis CPU us/req | items per script call |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in args.paths:
        for side in sides:
            cpus = side.cpu_us[path]
            eff = statistics.median(n / c for n, c in zip(noop.cpu_us[path], cpus, strict=True))
            redis = statistics.median(side.redis_us[path])
            per_call = side.per_call.get(path)
            print(f"| {path} | {side.name} | {statistics.median(w.per_s for w in side.windows[path]):,.0f} "
                  f"| {statistics.median(cpus):.1f} | {statistics.median(side.kernel_us[path]):.1f} | {eff:.2f} "
                  f"| {statistics.median(w.p99_ms for w in side.windows[path]):.1f} ms "
                  f"| {', '.join(f'{c:.0f}' for c in cpus)} | {redis:.1f} "
                  f"| {f'{statistics.median(per_call):.1f}' if per_call else 'n/a'} |")
    if args.before:
        before, after = sides[0], sides[1]
        for path in args.paths:
            ratios = [a / b for a, b in zip(after.cpu_us[path], before.cpu_us[path], strict=True)]
            print(f"{path}: after/before CPU per request {statistics.median(ratios):.3f} "
                  f"({min(ratios):.3f}-{max(ratios):.3f})")
    bare = next((side for side in sides if side.name == "bare"), None)
    if bare is not None:  # dropgate's distance from the no-op, split: its glue, and the rest
        full = sides[1] if args.before else sides[0]
        for path in args.paths:
            glue = [f - b for f, b in zip(full.cpu_us[path], bare.cpu_us[path], strict=True)]
            rest = [b - n for b, n in zip(bare.cpu_us[path], noop.cpu_us[path], strict=True)]
            print(f"{path}: {full.name} - bare (the request glue) {statistics.median(glue):.1f} us/request "
                  f"({min(glue):.1f} to {max(glue):.1f}); bare - no-op (the domain work) "
                  f"{statistics.median(rest):.1f} ({min(rest):.1f} to {max(rest):.1f})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--before", default=None, help="a git revision measured beside --after (optional)")
    parser.add_argument("--after", default="WORKTREE")
    parser.add_argument("--paths", default="invites,offers")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--codes", type=int, default=200_000)
    parser.add_argument("--floor", action="store_true",
                        help="also measure benchmarks.floor: the design's floor on aiohttp (auth wait, batch, codec)")
    parser.add_argument("--bare", action="store_true",
                        help="also measure benchmarks.bare: this tree's hot routes with their domain work only "
                             "(no request id, error shape, metrics, admission)")
    parser.add_argument("--floor-no-revocation", action="store_true",
                        help="also benchmarks.floor --no-revocation (the floor less its revocation wait)")
    parser.add_argument("--profile-seconds", type=int, default=0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--profiler", choices=["sampler", "py-spy"], default="sampler")
    parser.add_argument("--perf", action="store_true", help="also perf record -e cpu-clock, split by shared object")
    parser.add_argument("--keys", action="store_true",
                        help="an Idempotency-Key on every dropgate request, as dropgate's client sends "
                             "(default: on the purchase alone)")
    parser.add_argument("--out", default="", help="a folder for py-spy's raw files")
    args = parser.parse_args(argv)
    if args.keys:
        for name, route in PATHS.items():
            PATHS[name] = dataclasses.replace(route, idempotent=True)
    args.paths = args.paths.split(",")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    ensure_wrk()
    print(f"command: {shlex.join(['.venv/bin/python', '-m', 'benchmarks.cpu_profile', *argv])}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, host speed "
          f"{host_speed_us():.1f} us (sum(range(1000)); a fast host: {FAST_HOST_US}), {halt_poll()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dropgate-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        for name, p in [*PATHS.items(), ("noop", NOOP)]:
            (tmp / f"{name}.lua").write_text(lua_script(p))
        revs = ([export("before", args.before, tmp, {})] if args.before else []) + \
            [export("after" if args.before else "dropgate", args.after, tmp, {})]
        for r in revs:
            r.imported = imported_from(r)
            print(f"{r.label}: {r.rev} ({r.sha}), dropgate.__file__ = {r.imported}", flush=True)
        sides = asyncio.run(run(args, revs, tmp))
    report(args, sides)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}, host speed {host_speed_us():.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
