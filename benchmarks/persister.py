"""The write-behind persister: events/s per domain, and the backlog under a sustained crowd.

    .venv/bin/python -m benchmarks.persister [--runs 3] [--events 30000]
        [--domains offers,invites,promos,codes] [--variants main,after] [--baseline main]
    .venv/bin/python -m benchmarks.persister --crowd --seconds 60 --rate 8568
        [--crowd-domain offers] [--variants main,after]

``rates`` (the default): per run, per variant, per domain, a fresh key prefix and schema;
the domain's hot operation fills the logs through the real scripts
(``benchmarks/persister_fill.py``: one tenant, so one partition, the crowd of a drop on
one hot entity; ``--tenants N`` spreads it over N tenants and so over partitions),
then a persister drains them, and the rate is the events it applied over the time from
its start to an empty log. ``--crowd``: a crowd held at ``--rate`` events/s for
``--seconds`` through the engine (offer holds coalesced 64 to a script call, as the
API sends them), a persister in a process of its own; the backlog (the logs' length)
is sampled every second, and the drain time is from the crowd's stop to an empty log.

Each variant runs in a child process of its own, alternating within each run, so their
ratios come from the same minutes of the (shared, noisy) machine. ``main``: the code of
``--baseline`` (a git ref, exported with ``git archive``) imported instead of this
tree's; the others are this tree with settings overrides (``VARIANTS``), each one
variable away from ``after``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--child-baseline" in sys.argv:  # import the baseline's dropgate
    sys.path.insert(0, sys.argv[sys.argv.index("--child-baseline") + 1])

import argparse
import asyncio
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from typing import Any

import msgspec

from benchmarks import persister_fill
from benchmarks.common import private_settings, settings_env, stores
from dropgate.runtime import Runtime, open_runtime

# name -> settings overrides, and two switches back to main's code for one part:
# "executemany": main's appliers of purchases and invite uses (one statement per event);
# "row_triggers": main's row-level counter triggers (one UPDATE of the hot row per row).
# None: the baseline's code altogether, its defaults.
VARIANTS: dict[str, dict[str, Any] | None] = {
    "main": None,
    "after": {},
    "executemany": {"executemany": True},
    "row_triggers": {"row_triggers": True},
    "serial": {"persister_concurrency": 1},
    "no_read_ahead": {"persister_read_ahead": False},
    "no_pipeline": {"persister_pipeline": False},
    "default_gc": {"default_gc": True},  # CPython's collector settings, not ``dropgate persister``'s
    "batch4000": {"persister_batch_size": 4000},
    "batch250": {"persister_batch_size": 250},
    "batch2000": {"persister_batch_size": 2000},
}
_SWITCHES = ("executemany", "row_triggers", "default_gc")

# main's counters (0002 and 0010), for "row_triggers"
_ROW_TRIGGERS = """
DROP TRIGGER offer_purchases_inserted ON offer_purchases;
DROP TRIGGER offer_purchases_deleted ON offer_purchases;
DROP TRIGGER offer_purchases_updated ON offer_purchases;
CREATE FUNCTION offer_purchases_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_reserved integer := 0;
    d_sold     integer := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.status = 'pending' THEN d_reserved := d_reserved - OLD.quantity; END IF;
        IF OLD.units = 'sold' THEN d_sold := d_sold - OLD.quantity; END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.status = 'pending' THEN d_reserved := d_reserved + NEW.quantity; END IF;
        IF NEW.units = 'sold' THEN d_sold := d_sold + NEW.quantity; END IF;
    END IF;
    IF d_reserved <> 0 OR d_sold <> 0 THEN
        UPDATE offers SET reserved = reserved + d_reserved, sold = sold + d_sold
         WHERE tenant_id = COALESCE(NEW.tenant_id, OLD.tenant_id)
           AND offer_id = COALESCE(NEW.offer_id, OLD.offer_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER offer_purchases_count
AFTER INSERT OR DELETE OR UPDATE OF status, units, quantity ON offer_purchases
FOR EACH ROW EXECUTE FUNCTION offer_purchases_count();
DROP TRIGGER invite_code_uses_inserted ON invite_code_uses;
DROP TRIGGER invite_code_uses_deleted ON invite_code_uses;
CREATE FUNCTION invite_code_uses_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE invite_codes SET used_count = used_count + 1
         WHERE tenant_id = NEW.tenant_id AND code = NEW.code;
        RETURN NEW;
    END IF;
    UPDATE invite_codes SET used_count = used_count - 1
     WHERE tenant_id = OLD.tenant_id AND code = OLD.code;
    RETURN OLD;
END $$;
CREATE TRIGGER invite_code_uses_count AFTER INSERT OR DELETE ON invite_code_uses
FOR EACH ROW EXECUTE FUNCTION invite_code_uses_count();
"""


def _baseline_appliers(baseline: str) -> None:
    """Main's ``offer.purchase`` and ``invite.redeemed`` appliers in place of this tree's."""
    import importlib.util

    from dropgate.persistence.appliers import APPLIERS
    for name, etype in (("offers", "offer.purchase"), ("invites", "invite.redeemed")):
        path = os.path.join(baseline, "dropgate", "persistence", "appliers", f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"baseline_appliers_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        APPLIERS[etype] = module.APPLIERS[etype]


class _CollectorTime:
    """A ``gc.callbacks`` entry: the time the cyclic collector ran while it is installed
    (part of the persister process's CPU, which ``--variants default_gc,after`` compares)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.count += 1


def _tune_gc(job: dict[str, Any]) -> None:
    """The collector as ``dropgate persister`` sets it, once the process holds what it keeps;
    not for ``default_gc``, nor for a baseline from before ``dropgate.gcsettings`` (its
    persister command left CPython's defaults)."""
    import importlib.util

    if not job.get("default_gc") and importlib.util.find_spec("dropgate.gcsettings") is not None:
        from dropgate.gcsettings import tune_gc  # type: ignore[import-not-found,unused-ignore]

        tune_gc()


async def _switch_back(rt: Runtime, job: dict[str, Any]) -> None:
    if job.get("executemany"):
        _baseline_appliers(job["baseline"])
    if job.get("row_triggers"):
        await rt.pool.execute(_ROW_TRIGGERS)


# -- children ------------------------------------------------------------------------------
async def _lag(rt: Runtime) -> int:
    async with rt.redis.pipeline(transaction=False) as pipe:
        for p in range(rt.keys.partitions):
            pipe.xlen(rt.keys.log(p))
        return sum(int(n) for n in await pipe.execute())


async def _backend_pids(pool: Any) -> list[int]:
    """The PostgreSQL backend process of every connection the pool can open."""
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        return [int(await c.fetchval("SELECT pg_backend_pid()")) for c in conns]
    finally:
        for c in conns:
            await pool.release(c)


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (this machine's PostgreSQL backends)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def child_rates(job: dict[str, Any]) -> dict[str, Any]:
    """Fill one domain's logs, then time a persister draining them."""
    s = stores()
    async with private_settings(s, **job["overrides"]) as settings, \
            open_runtime(settings, run_persister=False) as rt:
        await _switch_back(rt, job)
        tenants = [f"t{i}" for i in range(job["tenants"])]
        per_tenant = job["events"] // len(tenants)
        for t in tenants:
            await persister_fill.setup(rt, job["domain"], t, capacity=per_tenant + 1000)
        persister = rt.new_persister(name="bench")  # one instance: it holds the leases from here on
        await persister.drain(timeout_s=120)
        written = await asyncio.gather(*(persister_fill.fill(rt, job["domain"], t, per_tenant, tag=t)
                                         for t in tenants))
        _tune_gc(job)
        entries = await _lag(rt)
        before = persister.stats.dead_letters
        pids = await _backend_pids(rt.pool)
        pg_cpu, py_cpu = _cpu_s(pids), time.process_time()
        collecting = _CollectorTime()
        gc.callbacks.append(collecting)
        started = time.perf_counter()
        task = asyncio.create_task(persister.run())
        while await _lag(rt) > 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        pg_cpu, py_cpu = _cpu_s(pids) - pg_cpu, time.process_time() - py_cpu
        gc.callbacks.remove(collecting)
        await persister.close()
        await task
        ops = sum(n for n, _ in written)  # every call succeeded: one hold / use / reservation each
        return {"entries": entries, "ops": ops, "seconds": seconds, "fill_per_s": sum(r for _, r in written),
                "ops_per_s": ops / seconds, "entries_per_s": entries / seconds,
                "pg_us": pg_cpu / ops * 1e6, "py_us": py_cpu / ops * 1e6,
                "gc_us": collecting.seconds / ops * 1e6, "collections": collecting.count,
                "dead_letters": persister.stats.dead_letters - before}


async def child_crowd(job: dict[str, Any], argv0: list[str]) -> dict[str, Any]:
    """A paced crowd for ``seconds`` with a persister process running; backlog each second."""
    s = stores()
    async with private_settings(s, **job["overrides"]) as settings, \
            open_runtime(settings, run_persister=False) as rt:
        await _switch_back(rt, {**job, "executemany": False})  # the persister process does that one
        domain, tenant = job["domain"], "crowd"
        rate, seconds = job["rate"], job["seconds"]
        await persister_fill.setup(rt, domain, tenant, capacity=int(rate * seconds * 1.2) + 1000)
        env = settings_env(settings)
        env["BENCH_SETTINGS"] = msgspec.json.encode(settings).decode()
        env["BENCH_EXECUTEMANY"] = job["baseline"] if job.get("executemany") else ""
        env["BENCH_DEFAULT_GC"] = "1" if job.get("default_gc") else ""
        proc = subprocess.Popen([*argv0, "--child-persister"], env=env)
        try:
            waited = time.perf_counter()
            while await _lag(rt) > 0:  # the setup's events applied: the persister is running
                if proc.poll() is not None or time.perf_counter() - waited > 120:
                    raise RuntimeError("the persister process did not start")
                await asyncio.sleep(0.05)
            one = persister_fill.operation(rt, domain, tenant, "c")
            per_call = 64 if domain == "offers" else 1
            tick = 0.01
            calls_per_tick = rate * tick / per_call
            backlog: list[int] = []
            written = 0
            inflight: set[asyncio.Task[int]] = set()
            started = time.perf_counter()
            next_sample = started + 1.0
            owed = 0.0
            i = 0
            while (now := time.perf_counter()) - started < seconds:
                owed += calls_per_tick
                while owed >= 1:
                    owed -= 1
                    t = asyncio.create_task(one(i))
                    i += 1
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
                if now >= next_sample:
                    backlog.append(await _lag(rt))
                    next_sample += 1.0
                await asyncio.sleep(max(0.0, started + (i * per_call / rate) - time.perf_counter()))
            results = await asyncio.gather(*inflight)
            written = i * per_call
            del results
            crowd_s = time.perf_counter() - started
            stop_lag = await _lag(rt)
            stopped = time.perf_counter()
            while await _lag(rt) > 0:
                if time.perf_counter() - stopped > 300:
                    raise RuntimeError("the persister did not drain in 300 s")
                await asyncio.sleep(0.02)
            drain_s = time.perf_counter() - stopped
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        return {"written": written, "crowd_s": crowd_s, "write_per_s": written / crowd_s,
                "backlog": backlog, "max_backlog": max(backlog or [0]), "stop_backlog": stop_lag,
                "drain_s": drain_s}


async def child_persister() -> None:
    """A persister alone in this process, on the crowd's prefix and schema, until SIGTERM."""
    from dropgate.settings import Settings
    settings = msgspec.json.decode(os.environ["BENCH_SETTINGS"], type=Settings)
    if os.environ.get("BENCH_EXECUTEMANY"):
        _baseline_appliers(os.environ["BENCH_EXECUTEMANY"])
    async with open_runtime(settings, run_persister=False) as rt:
        _tune_gc({"default_gc": bool(os.environ.get("BENCH_DEFAULT_GC"))})
        persister = rt.new_persister(name="crowd-persister")
        task = asyncio.create_task(persister.run())
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await persister.close()
        await task


# -- the parent ----------------------------------------------------------------------------
def _export(ref: str) -> str:
    path = tempfile.mkdtemp(prefix="dropgate-baseline-")
    archive = subprocess.run(["git", "archive", ref, "dropgate"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", path], input=archive, check=True)
    return path


def _run_child(variant: str, job: dict[str, Any], baseline: str) -> dict[str, Any]:
    overrides = dict(VARIANTS[variant] or {})
    job = {**job, "baseline": baseline, **{k: overrides.pop(k, False) for k in _SWITCHES},
           "overrides": overrides}
    cmd = [sys.executable, "-m", "benchmarks.persister", "--child", json.dumps(job)]
    if VARIANTS[variant] is None:  # the baseline's code, not this tree's
        cmd += ["--child-baseline", baseline]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{variant} {job}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def rates(args: argparse.Namespace, variants: list[str], baseline: str) -> None:
    domains = args.domains.split(",")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    print(f"persister drain: {args.runs} runs x {args.events:,} events per domain, "
          f"{args.tenants} tenant(s); variants {', '.join(variants)}", flush=True)
    for run in range(args.runs):
        for domain in domains:
            for variant in (variants if run % 2 == 0 else variants[::-1]):
                r = _run_child(variant, {"mode": "rates", "domain": domain, "events": args.events,
                                         "tenants": args.tenants}, baseline)
                results.setdefault((domain, variant), []).append(r)
                print(f"  run {run + 1} {domain:8} {variant:13} {r['ops_per_s']:>9,.0f} ops/s, CPU per op "
                      f"{r['pg_us']:5.1f} us PostgreSQL + {r['py_us']:5.1f} us persister "
                      f"({r['entries']:,} log entries in {r['seconds']:.2f} s; "
                      f"the scripts wrote {r['fill_per_s']:,.0f}/s)", flush=True)
    print("\nmedians (ops/s = holds, uses, reservations applied per second)")
    header = f"{'domain':8} " + " ".join(f"{v:>13}" for v in variants)
    ratio_cols = [v for v in variants if v != variants[0]]
    print(header + "".join(f" {v + '/' + variants[0]:>18}" for v in ratio_cols)
          + f" {'vs hot path':>12}")
    for domain in domains:
        meds = {v: statistics.median(r["ops_per_s"] for r in results[(domain, v)]) for v in variants}
        ratios = [statistics.median(a["ops_per_s"] / b["ops_per_s"] for a, b in
                                    zip(results[(domain, v)], results[(domain, variants[0])], strict=True))
                  for v in ratio_cols]
        best = max(meds[v] for v in variants)
        print(f"{domain:8} " + " ".join(f"{meds[v]:>13,.0f}" for v in variants)
              + "".join(f" {r:>17.2f}x" for r in ratios) + f" {best / args.hot_path_rate:>11.2f}x")
    print(f"(vs hot path: the best variant's median over --hot-path-rate {args.hot_path_rate:,.0f}/s, "
          "the fastest hot path's rate through HTTP; target >= 1.5x)")
    print("\nmedian CPU per op, PostgreSQL backends + persister process (us); ops per CPU-second; of the "
          "persister's, the cyclic collector's (us per op, collections per 1,000 ops)")
    print(f"{'domain':8} " + " ".join(f"{v:>36}" for v in variants))
    for domain in domains:
        cells = []
        for v in variants:
            runs = results[(domain, v)]
            cpu = statistics.median(r["pg_us"] + r["py_us"] for r in runs)
            pg = statistics.median(r["pg_us"] for r in runs)
            gc_us = statistics.median(r.get("gc_us", 0.0) for r in runs)
            per_1000 = statistics.median(1000 * r.get("collections", 0) / r["ops"] for r in runs)
            cells.append(f"{pg:5.1f}+{cpu - pg:5.1f} {1e6 / cpu:>9,.0f}; gc {gc_us:4.2f} ({per_1000:4.1f})")
        print(f"{domain:8} " + " ".join(f"{c:>36}" for c in cells))


def crowd(args: argparse.Namespace, variants: list[str], baseline: str) -> None:
    print(f"sustained crowd: {args.crowd_domain} at {args.rate:,.0f} events/s for {args.seconds} s, "
          f"persister in its own process; variants {', '.join(variants)}", flush=True)
    for run in range(args.runs):
        for variant in (variants if run % 2 == 0 else variants[::-1]):
            r = _run_child(variant, {"mode": "crowd", "domain": args.crowd_domain, "rate": args.rate,
                                     "seconds": args.seconds}, baseline)
            print(f"  run {run + 1} {variant:13} wrote {r['written']:,} ({r['write_per_s']:,.0f}/s); "
                  f"backlog max {r['max_backlog']:,}, at stop {r['stop_backlog']:,}; "
                  f"drained {r['drain_s']:.1f} s after the stop", flush=True)
            print(f"    backlog each second: {', '.join(f'{b:,}' for b in r['backlog'])}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--domains", default=",".join(persister_fill.DOMAINS))
    parser.add_argument("--variants", default="main,after")
    parser.add_argument("--baseline", default="main", help="git ref of the 'main' variant")
    parser.add_argument("--hot-path-rate", type=float, default=8568.0,
                        help="the fastest hot path's events/s (offer purchase through HTTP, #19)")
    parser.add_argument("--crowd", action="store_true")
    parser.add_argument("--crowd-domain", default="offers")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=float, default=8568.0)
    parser.add_argument("--child")
    parser.add_argument("--child-baseline")
    parser.add_argument("--child-persister", action="store_true")
    args = parser.parse_args()
    if args.child_persister:
        asyncio.run(child_persister())
        return
    if args.child:
        job = json.loads(args.child)
        if job["mode"] == "rates":
            result = asyncio.run(child_rates(job))
        else:
            argv0 = [sys.executable, "-m", "benchmarks.persister"]
            if args.child_baseline:
                argv0 += ["--child-baseline", args.child_baseline]
            result = asyncio.run(child_crowd(job, argv0))
        print(json.dumps(result))
        return
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    baseline = _export(args.baseline) if any(VARIANTS[v] is None for v in variants) else ""
    try:
        (crowd if args.crowd else rates)(args, variants, baseline)
    finally:
        if baseline:
            shutil.rmtree(baseline, ignore_errors=True)


if __name__ == "__main__":
    main()
