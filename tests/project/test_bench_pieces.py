"""The benchmarks that time one piece of a request alone still run and check what they time (#19).

Not measurements: speed is never asserted here. ``body_read`` must show aiohttp's
``resume_reading`` asking the transport to resume on every request and the connection's
own never (nothing was paused); ``coroutine_layers`` must time every depth it was given;
``offers_script`` must split the script's Redis time into its commands and the Lua, and with
``--sections`` into every part ``script_sections`` names;
``glue`` must time every piece of a hot request's glue; ``purchase_concurrency`` must time
every connection count it was given; ``log_entries`` must read back and parse every event it
wrote, in both layouts; ``log_reads`` must give the same purchases from both shapes of one
reply; ``purchase_param`` must apply every hold with both parameters; ``arg_decode`` must read
the same requests and finishes in every layout; ``purchase_indexes`` must time every index of
the purchases' table and the byte-order keys; ``migration_times`` must apply every migration it
times, under both probes, leaving the rows as each promises; ``redisperf`` must name a stripped
``redis-server``'s code by the exported symbol before it; ``leanpath``'s bare protocols must
answer the no-op's request as its aiohttp application does, twice on one connection (a
body in the head's segment and one after it).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from benchmarks import leanpath, redisperf, script_sections
from benchmarks.common import stop_process
from benchmarks.redis_costs import start_redis_server
from benchmarks.revisions import NOOP
from dropgate.embedded import Endpoints
from dropgate.engine.scripts import sources

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_body_read_counts_the_resumes_it_saves() -> None:
    out = _run("benchmarks.body_read", "--rounds", "2", "--requests", "500")
    assert re.search(r"aiohttp's resume_reading +transport resumes in the last round: 1,000\b", out), out
    assert re.search(r"GuardedHandler's +transport resumes in the last round: 0\b", out), out
    assert "GuardedHandler's / aiohttp's:" in out


def test_wakeups_times_a_round_trip_on_one_core_and_across_two() -> None:
    out = _run("benchmarks.wakeups", "--rounds", "2", "--trips", "300")
    rows = dict(re.findall(r"^\| (one core|two cores) \| ([\d.]+) \|", out, re.M))
    layouts = {"one core", "two cores"} if len(os.sched_getaffinity(0)) > 1 else {"one core"}
    assert rows.keys() == layouts and all(float(v) > 0 for v in rows.values()), out
    assert re.search(r"; (guest halt polling \d+ ns|no guest halt polling here)$", out.splitlines()[0]), out


def test_coroutine_layers_times_every_depth() -> None:
    out = _run("benchmarks.coroutine_layers", "--rounds", "1", "--tasks", "200", "--depths", "1,3")
    assert [line.split("|")[1].strip() for line in out.splitlines() if re.match(r"\| \d ", line)] == ["1", "3"]
    assert "one more coroutine:" in out


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own. ``offers_script`` reads Redis's command counts, which
    on the machine's Redis also count what the other worker's tests run meanwhile (a run
    read 3.34 XADDs per purchase, and SMISMEMBER, which the script never calls)."""
    proc, url = start_redis_server(tmp_path, "offers-script")
    try:
        yield url
    finally:
        stop_process(proc, timeout_s=30)


def test_offers_script_splits_the_script_into_commands_and_lua(servers: Endpoints, own_redis: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": own_redis, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.offers_script", "--runs", "1", "--calls", "8", "--batch", "4", "--finish", "session,stored",
               env=env)
    assert out.count("| the script call (evalsha, the run's total) | 1 per 4 |") == 2, out  # each finish
    assert len(re.findall(r"\| xadd \| 1\.00 \|", out)) == 2, out  # one event per hold
    assert "| the Lua itself (evalsha less its commands) |" in out
    assert re.search(r"session / stored, evalsha us per purchase, run by run: median \d+\.\d{3}", out), out


def test_offers_script_times_every_section_of_the_script(servers: Endpoints, own_redis: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": own_redis, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.offers_script", "--runs", "1", "--calls", "8", "--batch", "4", "--sections", env=env)
    rows = {line.split(" | ")[0].removeprefix("| "): float(line.split(" | ")[1])
            for line in out.splitlines() if line.startswith("| ") and " | " in line
            and line.split(" | ")[0].removeprefix("| ") not in ("section", "---", "part")
            and line.split(" | ")[1].replace(".", "", 1).isdigit()}
    names = [s.name for s in script_sections.OFFER_PURCHASE_SECTIONS] + list(script_sections.OFFER_PURCHASE_TAIL[1:])
    assert set(names) | {"total"} <= set(rows), out
    assert all(rows[name] >= 0 for name in names) and rows["total"] > 0, out


def test_sections_name_the_script_as_it_is() -> None:
    """Every place is in the script once; a script changed under them is refused, not timed wrong."""
    text = sources()["offer_purchase_batch"].text
    instrumented = script_sections.instrument(text)
    assert instrumented.count("__tick(") == len(script_sections.OFFER_PURCHASE_SECTIONS) + 3 + 1  # + definition
    with pytest.raises(ValueError, match="update the sections"):
        script_sections.instrument(text.replace("local units_dirty = {}\n", "local units_dirty = {} \n"))


def test_glue_times_every_piece_of_a_hot_requests_glue(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.glue", "--rounds", "1", "--number", "200", env=env)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith(("| piece", "| ---"))]
    assert len(rows) == 8 and all(float(row.rsplit("|", 2)[1]) > 0 for row in rows), out
    assert "the front's match, kept" in out and "admission: a slot taken" in out
    assert re.search(r"the glue of one purchase \(every piece but the searched match\): [\d.]+ us", out), out


def test_purchase_concurrency_times_every_connection_count(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.purchase_concurrency", "--connections", "1,2", "--statements", "2", "--rounds", "2",
               "--holds", "50", env=env)
    rows = re.findall(r"^\| (\d) \| ([\d,]+) \| (.*) \| ([\d.]+) \|$", out, re.M)
    assert [row[0] for row in rows] == ["1", "2"], out
    assert all(float(row[1].replace(",", "")) > 0 and len(row[2].split(", ")) == 2 for row in rows), out
    assert rows[0][3] == "1.00", out


def test_log_entries_compares_both_layouts_on_what_they_wrote() -> None:
    out = _run("benchmarks.log_entries", "--rounds", "1", "--calls", "5", "--batch", "4")
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([\d.]+ \| [\d.]+) \| [\d.]+ \|$", out, re.M))
    assert len(rows) == 6, out
    # every event read back and parsed into a purchase (the benchmark exits 1 otherwise),
    # from one entry per event against one per call
    assert rows["stream entries per round"] == "20.00 | 5.00", out
    assert all(float(v) > 0 for pair in rows.values() for v in pair.split(" | ")), out


def test_log_reads_times_both_shapes_of_one_reply() -> None:
    out = _run("benchmarks.log_reads", "--rounds", "2", "--calls", "3", "--batch", "5")
    # both ways gave the same 15 purchases (the benchmark exits 1 otherwise), in every round
    assert len(re.findall(r"^round +\d+  parsed [\d.]+  as sent [\d.]+$", out, re.M)) == 2, out
    assert "medians of 2 rounds of 15 entries read at once" in out, out
    [row] = re.findall(r"^\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert all(float(v) > 0 for v in row), out


def test_arg_decode_reads_the_same_requests_both_ways(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url}
    out = _run("benchmarks.arg_decode", "--runs", "2", "--loops", "5", "--batch", "8", env=env)
    # every layout read every request and finish (the benchmark exits 1 otherwise), and all
    # are timed, in both runs and in the medians
    assert len(re.findall(r"^run \d \(us per entry\): requests: .*; finishes: ", out, re.M)) == 2, out
    medians = re.findall(r"^\| (requests|finishes) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [row[0] for row in medians] == ["requests", "finishes"], out


def test_purchase_param_applies_every_hold_with_both_parameters(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.purchase_param", "--rounds", "2", "--holds", "20", env=env)
    # every hold applied with each parameter (the benchmark exits 1 otherwise), and both timed
    assert "(80 purchases applied)" in out, out
    rows = dict(re.findall(r"^\| (json_rows|raw_rows) \| ([\d.]+) \(", out, re.M))
    assert rows.keys() == {"json_rows", "raw_rows"} and all(float(v) > 0 for v in rows.values()), out


def test_purchase_indexes_times_every_index_and_the_byte_order_keys(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.purchase_indexes", "--rounds", "2", "--holds", "50", "--rows", "500", env=env)
    # every variant applied every hold (the benchmark exits 1 otherwise) and was timed
    variant = r"as is|without \w+|without all of them|keys in byte order"
    rows = dict(re.findall(rf"^\| ({variant}) \| ([\d.]+) \(", out, re.M))
    assert {"as is", "keys in byte order", "without offer_purchases_list_user",
            "without offer_purchases_pending", "without all of them"} <= rows.keys(), out
    assert all(float(v) > 0 for v in rows.values()), out


def test_migration_times_applies_every_later_migration_under_its_probes(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    out = _run("benchmarks.migration_times", "--purchases", "3000", "--from-version", "21", env=env)
    # the rows kept as each migration promises and both probes ran (it exits 1 otherwise);
    # every migration after 21 timed
    rows = re.findall(r"^\| (\d{4})_\w+\.sql \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) s \|$", out, re.M)
    assert [r[0] for r in rows] == ["0022", "0023", "0024"], out


def test_redisperf_names_stripped_code_by_the_export_before_it() -> None:
    exported = redisperf.Exported([0x100, 0x200, 0x300, 0x400, 0x500],
                                  ["dictFind", "lua_close", "luaL_where", "luaopen_cjson", "zmalloc"])
    report = "\n".join([
        "# Samples: 10  of event 'cpu-clock'",
        "     40.00%             4  redis-check-rdb    [.] 0x0000000000000250",  # after lua_close
        "     10.00%             1  redis-check-rdb    [.] 0x0000000000000260",
        "     10.00%             1  redis-check-rdb    [.] dictFind",
        "     10.00%             1  redis-check-rdb    [.] 0x0000000000000350",  # after luaL_where
        "     10.00%             1  redis-check-rdb    [.] 0x0000000000000450",  # after luaopen_cjson
        "     10.00%             1  redis-check-rdb    [.] 0x0000000000000550",  # after zmalloc
        "     10.00%             1  [kernel.kallsyms]  [k] finish_task_switch",
    ])
    shares = redisperf.group(report, "redis-check-rdb", exported)
    assert shares == {
        redisperf.LUA_CORE: 50.0, "dictFind": 10.0, "Lua's auxiliary library, stripped (lauxlib.o)": 10.0,
        "Lua library code after luaopen_cjson (stripped)": 10.0, "zmalloc+ (stripped)": 10.0,
        "finish_task_switch (kernel)": 10.0}
    assert redisperf.stripped_name(None) == "before the first exported symbol (stripped)"


def _two_answers(url: str) -> list[tuple[int, list[str], str, bytes]]:
    """The no-op's request twice on one keep-alive connection, the first in one segment, the
    second's body after its head (both ways a bare protocol reads a body): status, the
    headers' names, type, body."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    answers = []
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        for user, split in (("u1", False), ("u2", True)):
            body = f'{{"user_id":"{user}","quantity":1}}'.encode()
            head = (f"POST {NOOP.route} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            if split:
                sock.sendall(head)
                time.sleep(0.05)
                sock.sendall(body)
            else:
                sock.sendall(head + body)
            response = http.client.HTTPResponse(sock)
            response.begin()
            answers.append((response.status, sorted(name.lower() for name, _ in response.getheaders()),
                            response.getheader("Content-Type", ""), response.read()))
    return answers


def test_leanpath_protocols_answer_as_the_application_does() -> None:
    started = {kind: leanpath.start(kind) for kind in ("app", "protocol", "protocol+task")}
    try:
        answers = {kind: _two_answers(url) for kind, (_, url) in started.items()}
    finally:
        for proc, _ in started.values():
            stop_process(proc, timeout_s=10)
    assert [(status, body) for status, _, _, body in answers["app"]] == [
        (201, b'{"ok":true,"user_id":"u1"}'), (201, b'{"ok":true,"user_id":"u2"}')]
    for kind in ("protocol", "protocol+task"):
        assert answers[kind] == answers["app"], kind
