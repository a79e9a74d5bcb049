"""Stopping the child processes a test (or a test's server helper) started.

Signal every one first, then wait: several servers shut down in parallel instead of one
after another. One that outlives ``timeout_s`` is SIGKILLed, so a hung shutdown cannot hang
the test's teardown; a test that wants a clean exit asserts ``returncode`` afterwards (each
process has been waited for, so it is set). ``None`` (never started) and processes that
have already exited are skipped.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable
from typing import Any


def stop_processes(procs: Iterable[subprocess.Popen[Any] | None], *, timeout_s: float) -> None:
    """SIGTERM each running process, give each ``timeout_s`` to exit, kill the ones that do not."""
    running = [proc for proc in procs if proc is not None and proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
