"""``make bench`` (``benchmarks.hotpaths``) still runs end to end, in about a second per path (#19).

Not a measurement (speed is never asserted here): the command runs every hot path
against the no-op and the source designs with a handful of wrk connections, and the
test checks what it leaves behind: the table, ``hotpaths.json`` with every path's four
designs (the two no-ops among them), persister samples and paused-persister drain, the PNG
charts, and a correctness check that ran and passed (the scarce entities sold exactly out,
PostgreSQL equal to Redis, reconcile 0).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dropgate.embedded import Endpoints

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["invites", "promos", "codes", "offers"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)")
def test_hotpaths_runs_every_path_and_checks_correctness(servers: Endpoints, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = tmp_path / "charts"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hotpaths", "--seconds", "1", "--rounds", "1", "--connections", "4",
         "--warmup", "0", "--codes", "10000", "--scarce", "20", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| path | design | req/s | / no-op | CPU us/req |" in done.stdout
    assert "OK: zero oversell, zero drift" in done.stdout
    assert "zero oversell, zero drift, reconcile 0: met" in done.stdout  # the targets block
    assert "against the no-op that answers as dropgate does" in done.stdout
    assert "what each throughput ratio is made of" in done.stdout
    assert "the machine's bound on" in done.stdout
    assert re.search(r"the cores over dropgate's windows: [\d.]+ this request path's "
                     r"\(of it [\d.]+ in interrupts\), idle ", done.stdout)
    assert "what each p99 ratio is made of" in done.stdout
    assert "| path | design | server | Redis | persister | PostgreSQL | wrk | all |" in done.stdout

    result = json.loads((out / "hotpaths.json").read_text())
    assert [p["path"] for p in result["paths"]] == PATHS
    # how fast the host ran Python at either end of the run, which each ratio depends on
    assert len(result["host_speed_us"]) == 2 and all(us > 0 for us in result["host_speed_us"]), result
    # and whether an idle virtual CPU halts at once (a wakeup across cores then costs far more)
    assert re.fullmatch(r"guest halt polling \d+ ns|no guest halt polling here", result["halt_poll"]), result
    assert re.search(r"host speed [\d.]+ us at start, [\d.]+ at the end", done.stdout), done.stdout
    for p in result["paths"]:
        assert set(p["designs"]) == {"dropgate", "baseline", "no-op", "written no-op"}
        for d in p["designs"].values():
            assert d["per_s"] > 0 and 0 < d["p50_ms"] <= d["p99_ms"] and d["cpu_us"] > 0, (p["path"], d)
            assert not d["problems"], (p["path"], d["problems"])
            # the server's CPU share and its run-queue wait (schedstat) were read over the window
            assert 0 < d["server_cores"] and d["server_waiting"] >= 0 and d["cores_vs_noop"] > 0, (p["path"], d)
            # and its neighbours' CPU per request: Redis by its own account, always there
            nb = d["neighbours_us"]
            assert nb["redis"] is not None and nb["redis"] >= 0 and nb["wrk"] is not None and nb["wrk"] > 0, nb
            assert all(v is None or v >= 0 for v in nb.values()), nb
            # the machine's time no process was charged for, read from /proc/stat: shares of it
            machine = d["machine"]
            assert set(machine) == {"idle", "interrupts", "stolen"}, machine
            assert all(0 <= v <= 1 for v in machine.values()) and sum(machine.values()) <= 1, machine
        # a dropgate request runs a script: Redis worked for it (the no-op's window needs none)
        assert p["designs"]["dropgate"]["neighbours_us"]["redis"] > 0, p["designs"]["dropgate"]
        assert p["designs"]["no-op"]["vs_noop"] == 1.0
        # each target's per-round ratios, whose median the targets block prints
        assert {k: len(v) for k, v in p["designs"]["dropgate"]["rounds"].items()} == {
            "vs_noop": 1, "cpu_efficiency": 1, "p99_vs_noop": 1}, p["designs"]["dropgate"]["rounds"]
        assert p["designs"]["written no-op"]["vs_written"] == 1.0
        assert p["designs"]["written no-op"]["name"] == "no-op, JsonResponse"
        assert p["persister"]["series"], p["path"]  # the backlog was sampled during the crowd
        # the paused persister's crowd: its events waited (the pause took), then were all applied
        # (the correctness check's drain and PostgreSQL == Redis below come after it)
        ceiling = p["persister"]["ceiling"]
        assert ceiling["crowd_per_s"] > 0 and ceiling["events"] > 0 and not ceiling["problems"], ceiling

    check = result["correctness"]
    assert check["ok"] and check["reconcile_exit"] == 0, check
    assert set(check["paths"]) == set(PATHS)
    for name, e in check["paths"].items():
        # twice as many requests as units: half refused (409, or a reservation without a code)
        assert e["requests"] == 40 and e["succeeded"] == 20 and not e["unexpected"], (name, e)
        assert e["oversold"] == 0 and e["pg_equals_redis"], (name, e)

    for name in ("hotpaths", "hotpaths-throughput", "hotpaths-latency", "hotpaths-persister-lag"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_machine_bound_is_the_cores_over_all_the_cpu_of_a_request() -> None:
    """``make bench``'s bound: 2 cores at 100 + 60 + 25 + 15 = 200 us per request in all
    allow 10,000/s; the run reached 9,000 (0.90 of it); 0.6 of a 20,000/s no-op allows
    166.7 us in all, 150 at 0.90; the server at efficiency 0.75 of the no-op's 45 us is 60,
    which leaves its neighbours 90. Of the cores, the 0.10 the path did not use: idle 0.06,
    stolen 0.01, other processes the rest, 0.03 (interrupts, 0.03, are inside the path's
    0.90). A neighbour not measured: no bound claimed."""
    from benchmarks.hotpaths import machine_bound

    def path(name: str, postgres: float | None) -> dict[str, object]:
        neighbours = {"redis": 60.0, "persister": 25.0, "postgres": postgres, "wrk": 15.0}
        return {"path": name, "designs": {
            "dropgate": {"cpu_us": 100.0 - (postgres or 0.0), "per_s": 9000.0, "neighbours_us": neighbours,
                         "machine": {"idle": 0.06, "interrupts": 0.03, "stolen": 0.01}},
            "no-op": {"cpu_us": 45.0, "per_s": 20000.0}}}

    lines = machine_bound({"cores": 2, "paths": [path("offers", 0.0), path("promos", None)]})
    assert lines[0].startswith("the machine's bound on 2 cores")
    assert lines[1] == ("- offers: 200 us per request in all, so at most 10,000/s = 0.50 of the no-op; dropgate "
                        "reached 0.90 of that bound. 0.6 of the no-op allows 167 us in all, 150 at this share: "
                        "with the server at CPU efficiency 0.75 (60 us, now 100), its neighbours 90 us (now 100)")
    assert lines[2] == ("  - the cores over dropgate's windows: 0.90 this request path's (of it 0.03 in "
                        "interrupts), idle 0.06, stolen 0.01, other processes 0.03")
    assert lines[3].startswith("- promos: n/a (a neighbour's CPU was not measured")


def test_a_targets_median_shows_its_rounds() -> None:
    """The targets block prints each median with its rounds' range (none for one round)."""
    from benchmarks.hotpaths import spread

    assert spread([0.72, 0.55, 0.95]) == " (rounds 0.55-0.95)"
    assert spread([1.04, 2.31], "x", 1) == " (rounds 1.0x-2.3x)"
    assert spread([0.7]) == ""


def test_a_p99_ratio_is_the_queue_the_throughput_sets_times_the_tails_shape() -> None:
    """``make bench``'s latency parts: at 256 connections and 8,000/s a request waits 32 ms by
    Little's law; p50 30 ms against the no-op's 10 (3.00, the throughput ratio 0.40 inverted
    2.50) x its p99 / p50 of 1.5 against the no-op's 2.0 (shape 0.75) = 2.25x, so p99 <= 2x
    would need a throughput of at least 0.375 of the no-op's."""
    from benchmarks.hotpaths import latency_parts

    lines = latency_parts({"connections": 256, "paths": [{"path": "offers", "designs": {
        "dropgate": {"p50_ms": 30.0, "p99_ms": 45.0, "per_s": 8000.0, "vs_noop": 0.4},
        "no-op": {"p50_ms": 10.0, "p99_ms": 20.0, "per_s": 20000.0}}}]})
    assert lines[0].startswith("what each p99 ratio is made of")
    assert lines[1] == ("- offers: p50 30.0 ms; Little's law: 32.0 ms; p50 / no-op's 3.00 (1 / throughput ratio "
                        "2.50) x shape 0.75 = p99 / no-op's 2.2x; p99 <= 2x asks for throughput >= 0.38 of the "
                        "no-op's")


def test_the_persisters_own_settings_and_niceness_are_checked_options() -> None:
    """``--persister-env`` and ``--persister-nice`` (the BENCHMARKS.md runs with the persister's
    pipeline off or niced): a setting for the persister's process alone, and nothing else."""
    from benchmarks.hotpaths import parse, persister_env

    args = parse(["--persister-env", "DROPGATE_PERSISTER_PIPELINE=false", "--persister-nice", "10"])
    assert args.persister_env == {"DROPGATE_PERSISTER_PIPELINE": "false"} and args.persister_nice == 10
    assert parse([]).persister_env == {} and parse([]).persister_nice == 0
    assert persister_env(["DROPGATE_A=x=y"]) == {"DROPGATE_A": "x=y"}
    for bad in (["--persister-env", "PERSISTER_PIPELINE=false"], ["--persister-env", "DROPGATE_X"],
                ["--persister-nice", "20"]):
        with pytest.raises(SystemExit):
            parse(bad)
