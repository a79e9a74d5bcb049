"""The fault-injection suite as a soak: one long drop, random faults, a history check.

    make soak                       # 5 minutes, random seed
    make soak ARGS="--minutes 30 --seed 42 --appendfsync always"
    make soak ARGS="--minutes 10 --faults slow_sockets,retry_storm"   # hostile clients (issue 21)

(``make soak`` then runs the hostile-client soak, tests/support/hostile_soak.py, for
HOSTILE_ARGS="--minutes 2" by default.)

Runs the API and persister processes against a private redis-server (AOF) and a
private PostgreSQL (both under a temp dir, removed afterwards), drives invite
redemptions and offer purchases (``tests/support/faultlab_offers.py``) through HTTP the
whole time, and every few seconds injects a random fault from ``tests/support/faultlab.py:
FAULTS``. After each fault ``dropgate reconcile`` must exit 0 while the load goes on
(in-flight events are not drift); at the end the load stops, the persister drains,
reconcile must exit 0 again, and the history checkers verify that no acknowledged
write was lost, none applied twice, nothing oversold.
Exit status 0 when every check held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.faultlab import FAULTS, Cluster, Load, PrivatePostgres, PrivateRedis, settle_and_check
from tests.support.faultlab_offers import OfferLoad

CODES = {"OPEN": 0, "OPEN2": 0, "OPEN3": 0, "LIMITED": 2_000, "TINY": 25}


def line(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:7.1f}s] {text}", flush=True)


async def bring_up(cluster: Cluster) -> None:
    """A soak's own PostgreSQL and Redis, the API, and a persister holding every partition
    before any crowd arrives (``Cluster.wait_persisting``)."""
    cluster.postgres.init()
    cluster.postgres.start()
    cluster.redis.start()
    await cluster.start()
    cluster.start_persister()
    await cluster.wait_persisting()


def show_logs(cluster: Cluster, folder: Path) -> None:
    """A failed run's process logs, and where its data stays for a look."""
    for p in [cluster.api, *cluster.persisters]:
        if p is not None:
            print(f"--- {p.name} (last lines)\n{p.output()}")
    print(f"(servers' data and process logs kept in {folder})")


def tear_down(cluster: Cluster, redis: PrivateRedis, postgres: PrivatePostgres, folder: Path, *,
              keep: bool) -> None:
    """Stop what a soak started; its folder goes unless a failure keeps it."""
    cluster.close()
    redis.stop()
    try:
        postgres.stop("immediate")
    except Exception:
        pass
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)


async def soak(minutes: float, seed: int, faults: list[str], every_s: float, appendfsync: str) -> int:
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="dropgate-soak-", dir="/tmp"))
    postgres = PrivatePostgres(folder / "pg")
    redis = PrivateRedis(folder / "redis", appendfsync=appendfsync)
    cluster = Cluster(folder=folder, redis=redis, postgres=postgres, name="soak" + uuid.uuid4().hex[:6],
                      codes=CODES)
    started = time.monotonic()
    counts: dict[str, int] = {}
    keep = False
    try:
        await bring_up(cluster)
        offers = OfferLoad(cluster, units=20_000, seed=seed)
        await offers.prepare()
        load = Load(cluster, workers=16, seed=seed, companion=offers)
        load.start()
        line(started, f"soak: seed {seed}, {minutes} min, faults {', '.join(faults)}, appendfsync {appendfsync}")
        deadline = started + minutes * 60
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(every_s / 2, every_s))
            name = rng.choice(faults)
            note = await FAULTS[name](cluster, load, rng)
            counts[name] = counts.get(name, 0) + 1
            line(started, f"{name}: {note}")
            await asyncio.sleep(1.0)
            report = await cluster.reconcile("--wait", "10")
            line(started, f"  reconcile under load: exit {report['exit_code']}, "
                           f"{len(report.get('in_flight', []))} in flight, {load.count('ok')} acknowledged so far")
            if report["exit_code"] != 0 and cluster.redis.aof_loss():
                # Writes an everysec Redis lost after the persister read them leave
                # PostgreSQL ahead (tests/support/aofloss.py); the final check below tells
                # whether every divergence is one of those.
                line(started, "  (a kill under appendfsync everysec may leave PostgreSQL ahead: "
                               "checked against the history at the end)")
            elif report["exit_code"] != 0:
                print(json.dumps(report, indent=1)[:4000])
                print(f"(servers' data and process logs kept in {folder})")
                keep = True
                return 1
        report, summary = await settle_and_check(cluster, load)
        line(started, f"final reconcile: exit {report['exit_code']}; history: {summary}")
        line(started, f"faults injected: {counts}; HTTP statuses: {load.statuses}")
        print("soak: PASSED")
        return 0
    except AssertionError as exc:
        line(started, f"soak: FAILED: {exc}")
        show_logs(cluster, folder)
        keep = True
        return 1
    finally:
        tear_down(cluster, redis, postgres, folder, keep=keep)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between faults (random, up to this)")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of " + ", ".join(FAULTS))
    parser.add_argument("--appendfsync", choices=["everysec", "always"], default="everysec")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    return asyncio.run(soak(args.minutes, seed, faults, args.every, args.appendfsync))


if __name__ == "__main__":
    sys.exit(main())
