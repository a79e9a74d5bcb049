"""Run a Python module under a CPU-time sampling profiler: ``python benchmarks/cpu_sampler.py MODULE ARGS...``.

Why (issue #19, BENCHMARKS.md "Where each microsecond of a request goes"): py-spy
samples wall-clock time and counts a thread as busy whenever it is not blocked in a
system call, so on this shared machine (load 5-12 on 2 cores) a server that is
runnable but waiting for a core is sampled too, at the frame where it was preempted:
mostly just after a ``write`` that woke wrk or Redis. Its samples then added up to 2-3x
the process's measured CPU. ``ITIMER_PROF`` counts the process's own CPU time (user +
system), so every sample here is a slice of CPU actually spent, and the shares
multiply the measured CPU per request exactly.

The handler runs at the next bytecode boundary of the main thread: time in C code
(msgspec, hiredis, aiohttp's C parser, a ``send``) counts in the Python frame that
called it, as with py-spy's ``--native off``; uvloop's own C loop time counts in the
first Python callback it runs next (so "event loop" reads low here and the callbacks
it calls read slightly high). SIGUSR1 starts sampling (every ``DROPGATE_SAMPLER_US``
microseconds of CPU, 1000 by default); SIGUSR2 stops it and writes the collapsed
stacks (py-spy's ``raw`` format) to ``DROPGATE_SAMPLER_OUT``.
"""

from __future__ import annotations

import collections
import os
import runpy
import signal
import sys
from types import FrameType


def _install() -> None:
    out = os.environ.get("DROPGATE_SAMPLER_OUT", "cpu-samples.raw")
    interval = int(os.environ.get("DROPGATE_SAMPLER_US", "1000")) / 1e6
    counts: collections.Counter[str] = collections.Counter()

    def sample(signum: int, frame: FrameType | None) -> None:
        parts = []
        while frame is not None:
            code = frame.f_code
            parts.append(f"{code.co_name} ({code.co_filename}:{frame.f_lineno})")
            frame = frame.f_back
        parts.reverse()
        counts[";".join(parts)] += 1

    def start(signum: int, frame: FrameType | None) -> None:
        counts.clear()
        signal.setitimer(signal.ITIMER_PROF, interval, interval)

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            for stack, n in counts.items():
                f.write(f"{stack} {n}\n")
        os.replace(tmp, out)

    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if __name__ == "__main__":
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = os.getcwd()  # as ``python -m`` would: this folder's modules must not shadow the program's
    _install()
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
