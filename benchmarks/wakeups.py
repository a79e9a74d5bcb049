"""What one process waking another costs on this machine: on the same core, and across cores.

    .venv/bin/python -m benchmarks.wakeups [--rounds 5] [--trips 20000]

Why (issue #19): in ``make bench`` the machine's cores idle for 0.13-0.18 of dropgate's
windows (``storecpu.unattributed``) while its server waits for a core for 0.09-0.16 of its
own time, and that idle share is the part of the machine's bound a path does not reach. A
request crosses processes (wrk, the server, Redis, the persister, PostgreSQL), and each
crossing wakes a process, often on the other core; a core with nothing to run halts. On a
virtual machine a halted virtual CPU is woken through the hypervisor, which can take far
longer than the switch itself, and the guest counts that time as idle. The no-op crosses
only between wrk and its server.

Two processes pass one byte back and forth over two pipes ``--trips`` times, both pinned
(``os.sched_setaffinity``) to core 0, then one to each of cores 0 and 1; the figure is the
wall time per round trip (two wakeups), the median of ``--rounds`` rounds of each, in turn.
It also prints the guest's halt polling (``/sys/module/haltpoll/parameters``: how long an
idle virtual CPU spins before it halts; 0 = it halts at once), where the machine has it.
Linux only (``os.fork``, affinity); a machine of one core measures the first layout only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks.common import halt_poll


def round_trip_us(trips: int, parent_core: int, child_core: int) -> float:
    """Microseconds per round trip of one byte between this process and a child, each
    pinned to its core."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: echo every byte until the parent closes its end
        try:
            os.close(to_child_w)  # else its own copy keeps the pipe open: no end of file
            os.close(to_parent_r)
            os.sched_setaffinity(0, {child_core})
            while os.read(to_child_r, 1):
                os.write(to_parent_w, b"x")
        finally:
            os._exit(0)
    os.close(to_child_r)
    os.close(to_parent_w)
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {parent_core})
        os.write(to_child_w, b"x")  # one trip first: the child has pinned itself and runs
        os.read(to_parent_r, 1)
        started = time.perf_counter()
        for _ in range(trips):
            os.write(to_child_w, b"x")
            os.read(to_parent_r, 1)
        elapsed = time.perf_counter() - started
    finally:
        os.sched_setaffinity(0, mask)
        os.close(to_child_w)
        os.waitpid(pid, 0)
        os.close(to_parent_r)
    return elapsed / trips * 1e6


def main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    layouts = {"one core": (cores[0], cores[0])}
    if len(cores) > 1:
        layouts["two cores"] = (cores[0], cores[1])
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, (a, b) in layouts.items():
            times[name].append(round_trip_us(args.trips, a, b))
    print(f"{args.rounds} rounds of {args.trips:,} round trips of one byte over two pipes, per layout in turn; "
          f"cores {cores}; {halt_poll()}")
    print("\n| processes pinned to | µs per round trip (two wakeups), median | rounds |\n| --- | --- | --- |")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    if len(layouts) == 2:
        ratio = statistics.median(times["two cores"]) / statistics.median(times["one core"])
        print(f"\nacross cores / on one core: {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=20_000)
    main(parser.parse_args())
