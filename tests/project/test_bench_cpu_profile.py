"""``benchmarks.cpu_profile`` still runs end to end with ``--bare`` (#19).

Not a measurement (speed is never asserted here): one round of one second on one path
with a handful of wrk connections, against dropgate, ``benchmarks.bare`` and the no-op.
The test checks what the command prints: every server's row with its CPU and Redis's CPU
per request, and the split of dropgate's distance from the no-op into the glue and the rest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dropgate.embedded import Endpoints

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)")
def test_cpu_profile_measures_dropgate_bare_and_the_noop(servers: Endpoints) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env |= {"DROPGATE_BENCH_REDIS_URL": servers.redis_url, "DROPGATE_BENCH_DATABASE_URL": servers.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_profile", "--bare", "--paths", "invites", "--rounds", "1",
         "--seconds", "1", "--connections", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = r"^\| invites \| (\S+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| .* \| ([\d.]+) \| (\S+) \|$"
    rows = {m[0]: m for m in re.findall(row, done.stdout, re.M)}
    assert set(rows) == {"dropgate", "bare", "no-op"}, done.stdout
    for name, (_, per_s, cpu, kernel, efficiency, _redis, _per_call) in rows.items():
        assert float(per_s.replace(",", "")) > 0 and float(cpu) > 0 and float(efficiency) > 0, (name, rows)
        assert 0 <= float(kernel) <= float(cpu), (name, rows)  # the kernel's part of the server's CPU
    # a redemption runs a script: Redis worked for dropgate and for bare alike
    assert float(rows["dropgate"][5]) > 0 and float(rows["bare"][5]) > 0, rows
    # both serve dropgate's /metrics, whose redemption queue carried at least one item per call;
    # the no-op has no queue
    assert float(rows["dropgate"][6]) >= 1 and float(rows["bare"][6]) >= 1 and rows["no-op"][6] == "n/a", rows
    assert re.search(r"^invites: dropgate - bare \(the request glue\) -?[\d.]+ us/request .*; bare - no-op "
                     r"\(the domain work\) -?[\d.]+", done.stdout, re.M), done.stdout
    # how fast the host ran Python at either end, which every ratio depends on
    assert re.search(r"^machine: .* host speed [\d.]+ us .*, (guest halt polling \d+ ns|no guest halt polling here), ",
                     done.stdout, re.M), done.stdout
    assert re.search(r"^load average at the end [\d.]+, host speed [\d.]+ us$", done.stdout, re.M), done.stdout
