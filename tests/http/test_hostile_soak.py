"""The hostile-client soak (``make soak``, tests/support/hostile_soak.py) cannot rot: one
cycle of it (one round of each scenario on ``--workers 2``, then on ``--workers 1``)
through its command line, and a broken invariant is named and fails the run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import hostile_soak
from tests.support.faultlab import ROOT

pytestmark = pytest.mark.slow


def test_one_cycle_of_every_scenario_on_both_generations() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.support.hostile_soak", "--cycles", "1", "--seed", "21"],
                          cwd=ROOT, capture_output=True, text=True, timeout=170)
    out = done.stdout
    assert done.returncode == 0, out[-6000:] + done.stderr[-2000:]
    rounds = re.findall(r"round \d+ \[--workers (\d)\] (\w+): ", out)
    for workers in ("2", "1"):
        assert sorted(name for w, name in rounds if w == workers) == sorted(hostile_soak.SCENARIOS), rounds
    assert "generation --workers 2 ended by kill -9 of its first process" in out
    assert "--workers 1 on the same port, only it serves (rotated admin key)" in out
    assert "dropgate reconcile: exit 0" in out
    assert out.rstrip().endswith("hostile soak: PASSED"), out[-2000:]


def test_a_broken_invariant_is_named_and_fails_the_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def broken(r: hostile_soak.Round) -> str:
        raise AssertionError("the revoked key still served: 3 successes of 400 after revocation")

    monkeypatch.setitem(hostile_soak.SCENARIOS, "revocation", broken)
    code = hostile_soak.main(["--cycles", "1", "--workers", "1", "--scenarios", "header_junk,revocation",
                              "--seed", "3"])
    out = capsys.readouterr().out
    kept = re.search(r"data and process logs kept in (\S+)\)", out)
    if kept:
        shutil.rmtree(Path(kept.group(1)), ignore_errors=True)
    assert code == 1, out[-3000:]
    last = out.rstrip().splitlines()[-1]
    assert re.search(r"hostile soak: FAILED in round \d \(revocation, --workers 1\): "
                     r"the revoked key still served: 3 successes", last), last
    assert "PASSED" not in out
