"""Redis time per purchase inside ``offer_purchase_batch`` (the script alone, no HTTP).

    .venv/bin/python -m benchmarks.offers_script [--runs 5] [--calls 300] [--batch 64] [--sections]
    PYTHONPATH=<another revision's tree> .venv/bin/python benchmarks/offers_script.py ...

The second form runs this file against another revision's ``dropgate`` (and its
``benchmarks.common``), e.g. ``git archive 009d50c | tar -x -C /tmp/old``: the file
itself needs only ``purchase_batch`` and the records it takes, which have not changed.

Each call holds ``--batch`` new purchases (a new user and an idempotency key each) and
stores the final responses of the previous call's purchases, as the API does under a
crowd (the 201 of a purchase rides with its offer's next batch). The time is Redis'
own accounting (``INFO commandstats``, ``cmdstat_evalsha`` usec, which includes the
commands the script runs), so it counts work, not the wall clock, and a busy
machine disturbs it far less than a throughput figure. The counter is the instance's:
another client's script running during one of these calls would be counted with it,
which the median over calls leaves out.

Prints the median over runs of each run's median per-purchase time, and Redis's own CPU
(``INFO cpu``, ``used_cpu_sys + used_cpu_user``) per purchase over each run: on a
private ``redis-server`` (``DROPGATE_BENCH_REDIS_URL``) that counts only this work,
and a busy machine stretches it far less than a wall-clock counter.

``--sections`` runs the script instrumented (``script_sections``: Redis's clock read at
each part of it) and adds where the call's time goes, part by part, the Lua between the
commands included (the figures above then include the readings: Redis counts them under
``time`` and ``rpush`` in the commands' table).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from dataclasses import dataclass

from benchmarks import script_sections
from benchmarks.common import private_runtime, stores
from benchmarks.storecpu import redis_cpu_s
from dropgate.engine.offers import FinishItem, HoldRequest, HoldResult
from dropgate.engine.scripts import sources
from dropgate.runtime import Runtime


def new_id(prefix: str) -> str:
    """An id of the API's shape (here, not ``dropgate.ids``: older revisions have none)."""
    return prefix + os.urandom(10).hex()

# a 201 body of the size the API sends (stored under its key before 2026-12-06's change;
# ``--finish stored`` stores it again, to measure what that cost beside ``session``)
_BODY = (b'{"purchase_id":"pu_0123456789abcdef0123","status":"pending","checkout_session_id":'
         b'"cs_sandbox_0123456789abcdef0123456789","checkout_url":"http://127.0.0.1:8080/v1/sandbox/'
         b'checkout/cs_sandbox_0123456789abcdef0123456789","expires_at":"2026-11-21T20:00:00.000Z"}')


@dataclass
class Run:
    """One run, per purchase: the median and the 10th percentile of the calls' evalsha
    usec (the fast calls: the ones a busy machine did not interrupt), Redis CPU usec, the
    evalsha usec over the whole run, and by command the calls and usec of the commands the
    script ran (what is left of the evalsha usec is the Lua itself: arguments, JSON, strings)."""

    median_us: float
    p10_us: float
    cpu_us: float
    evalsha_us: float
    by_command: dict[str, tuple[float, float]]

    @property
    def commands(self) -> float:
        return sum(n for n, _ in self.by_command.values())

    @property
    def in_commands_us(self) -> float:
        return sum(us for _, us in self.by_command.values())


async def _evalsha_us(rt: Runtime) -> int:
    return int((await rt.redis.info("commandstats"))["cmdstat_evalsha"]["usec"])


_NOT_THE_SCRIPTS = ("evalsha", "info")


async def _command_stats(rt: Runtime) -> dict[str, tuple[int, int]]:
    """Each command's calls and usec so far (Redis counts a script's commands under their
    own names as well as in ``evalsha``)."""
    stats = await rt.redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}


FINISHES = {
    "session": "each call also attaches the previous call's checkout sessions (as the API does)",
    "stored": "each call also attaches the previous call's sessions and stores their 201s under their keys "
              "(as the API did before 2026-12-06)",
    "none": "no sessions attached, nothing stored under a key",
}


async def one_run(rt: Runtime, calls: int, batch: int, run: int, *, keys: bool = True, finish: str = "session",
                  ) -> Run:
    """One run's figures per purchase (see ``Run``)."""
    finishes: list[FinishItem] = []
    per_purchase: list[float] = []
    cpu_before, commands_before = await redis_cpu_s(rt.redis), await _command_stats(rt)
    for call in range(calls):
        holds = [HoldRequest(purchase_id=new_id("pu_"), user_id=f"r{run}c{call}u{i}", quantity=1,
                             idem_digest=f"{run:08x}{call:016x}{i:016x}" if keys else "",
                             fingerprint=f"fp{call}x{i}" if keys else "")
                 for i in range(batch)]
        before = await _evalsha_us(rt)
        results: list[HoldResult] = await rt.offers.purchase_batch(
            "bench", "hot", holds, finishes, hold_ttl_ms=1_800_000, rate_interval_ms=200.0,
            rate_burst=10, idem_ttl_ms=86_400_000, idem_stale_ms=60_000)
        per_purchase.append((await _evalsha_us(rt) - before) / batch)
        if not all(r.ok for r in results):
            raise RuntimeError(f"a hold was refused: {next(r for r in results if not r.ok)}")
        stored = finish == "stored"
        finishes = [FinishItem(purchase_id=h.purchase_id, session_id="cs_sandbox_" + h.purchase_id,
                               checkout_url="http://127.0.0.1:8080/v1/sandbox/checkout/cs_sandbox_"
                               + h.purchase_id, idem_digest=h.idem_digest if stored else "",
                               status=201 if stored else 0, body=_BODY if stored else b"")
                    for h in holds] if finish != "none" else []
    cpu_us = (await redis_cpu_s(rt.redis) - cpu_before) * 1e6 / (calls * batch)
    purchases = calls * batch
    spent = {name: ((n - commands_before.get(name, (0, 0))[0]) / purchases,
                    (us - commands_before.get(name, (0, 0))[1]) / purchases)
             for name, (n, us) in (await _command_stats(rt)).items()}
    timed = sorted(per_purchase[5:] or per_purchase)  # past the first calls' warm-up
    return Run(median_us=statistics.median(timed), p10_us=timed[len(timed) // 10], cpu_us=cpu_us,
               evalsha_us=spent["evalsha"][1],
               by_command={name: figures for name, figures in spent.items()
                           if figures[0] > 0 and name not in _NOT_THE_SCRIPTS})


async def main(runs: int, calls: int, batch: int, *, keys: bool = True, finishes: tuple[str, ...] = ("session",),
               sections: bool = False) -> None:
    """Every run measures each of ``finishes`` in turn (side by side, on the same offer)."""
    s = stores()
    async with private_runtime(s, persister_enabled=False, max_backlog=50_000_000,
                               purchase_batch_size=batch) as rt:
        log_key = rt.keys.tenant("bench").log
        if sections:  # the instrumented copy in the real one's place, for every call below
            rt.scripts._scripts["offer_purchase_batch"] = rt.redis.register_script(
                script_sections.instrument(sources()["offer_purchase_batch"].text))
        spent: dict[str, list[float]] = {}
        await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
        await rt.offers.create("bench", offer_id="hot", event_id="drop", name="Hot", price_minor=2500,
                               currency="usd", total=10**9, max_per_order=3, expires_at_ms=None,
                               active=True)
        print(f"offer_purchase_batch: {runs} runs of {calls} calls x {batch} purchases "
              f"({'each with' if keys else 'without'} an idempotency key); in each run, in turn:")
        for finish in finishes:
            print(f"  {finish}: {FINISHES[finish]}")
        done: dict[str, list[Run]] = {finish: [] for finish in finishes}
        for run_no in range(runs):
            for finish in finishes:
                run = await one_run(rt, calls, batch, run_no * len(finishes) + finishes.index(finish),
                                    keys=keys, finish=finish)
                done[finish].append(run)
                if sections:
                    for name, values in (await script_sections.collect(
                            rt.redis, log_key, batch, skip=min(5, calls - 1))).items():
                        spent.setdefault(name, []).extend(values)
                print(f"  run {run_no + 1}, {finish}: {run.median_us:.1f} us of Redis per purchase (median of "
                      f"the calls; p10 {run.p10_us:.1f}), Redis CPU {run.cpu_us:.1f} us, {run.commands:.2f} "
                      "commands per purchase", flush=True)
        for finish in finishes:
            print(f"\n## {finish}")
            _report(done[finish], batch)
        if len(finishes) > 1:
            base = finishes[0]
            for finish in finishes[1:]:
                ratios = [a.median_us / b.median_us for a, b in zip(done[base], done[finish], strict=True)]
                print(f"\n{base} / {finish}, evalsha us per purchase, run by run: median "
                      f"{statistics.median(ratios):.3f} ({', '.join(f'{r:.3f}' for r in ratios)})")
        if sections:
            print("\nthe script's parts, timed inside Redis (TIME at each; the calls of every run):\n")
            print("\n".join(script_sections.table(spent)))


def _report(runs_done: list[Run], batch: int) -> None:
    """One finish's figures over its runs."""

    def runs_of(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"

    commands = statistics.median(r.commands for r in runs_done)
    print(f"per purchase, medians of the runs: evalsha us {runs_of([r.median_us for r in runs_done])}; "
          f"p10 {runs_of([r.p10_us for r in runs_done])}; Redis CPU us {runs_of([r.cpu_us for r in runs_done])}; "
          f"{commands:.2f} commands")

    def median_of(name: str, index: int) -> float:
        return statistics.median(r.by_command.get(name, (0.0, 0.0))[index] for r in runs_done)

    names = sorted({name for r in runs_done for name in r.by_command}, key=lambda name: -median_of(name, 1))
    print("\nthe evalsha usec of a whole run per purchase, and of it the commands the script ran "
          "(Redis's own usec of each; medians of the runs):\n")
    print("| part | calls | usec |")
    print("| --- | --- | --- |")
    print(f"| the script call (evalsha, the run's total) | 1 per {batch} | "
          f"{statistics.median(r.evalsha_us for r in runs_done):.1f} |")
    for name in names:
        print(f"| {name} | {median_of(name, 0):.2f} | {median_of(name, 1):.1f} |")
    print(f"| the Lua itself (evalsha less its commands) | | "
          f"{statistics.median(r.evalsha_us - r.in_commands_us for r in runs_done):.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    # what a part of the call costs: the same calls without it (BENCHMARKS.md, "Redis's share of a purchase")
    parser.add_argument("--no-key", action="store_true", help="purchases without an idempotency key")
    parser.add_argument("--finish", default="session",
                        help=f"comma-separated, measured in turn in every run: {', '.join(FINISHES)}")
    parser.add_argument("--sections", action="store_true",
                        help="also time the script's parts inside Redis (benchmarks.script_sections)")
    args = parser.parse_args()
    if min(args.runs, args.calls, args.batch) < 1:
        raise SystemExit("--runs, --calls and --batch must be at least 1")
    modes = tuple(args.finish.split(","))
    if not modes or any(mode not in FINISHES for mode in modes):
        raise SystemExit(f"--finish: one or more of {', '.join(FINISHES)}")
    asyncio.run(main(args.runs, args.calls, args.batch, keys=not args.no_key, finishes=modes,
                     sections=args.sections))
