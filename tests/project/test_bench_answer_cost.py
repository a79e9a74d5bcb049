"""``benchmarks.answer_cost`` runs and checks that both ways send the same bytes (#19).

Not a measurement: speed is never asserted here. The command refuses to time the two
answers unless ``web.Response`` and ``JsonResponse`` handed the transport the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_answer_cost_runs_and_compares_the_bytes() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.answer_cost", "--rounds", "1", "--answers", "200"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the same bytes both ways (Date aside): checked" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| web.Response")
            or line.startswith("| JsonResponse") or line.startswith("| stub writer")]
    assert len(rows) == 3, done.stdout
