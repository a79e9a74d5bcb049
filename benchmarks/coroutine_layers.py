"""What one more coroutine between a request's task and the future it parks on costs.

    .venv/bin/python -m benchmarks.coroutine_layers [--rounds 7] [--tasks 20000] [--depths 1,2,3,4,5,6]

Why (issue #19, BENCHMARKS.md "Reading a body resumes nothing"): a crowd's request parks
on its batch's future, and when the batch answers it resumes through every coroutine
between its task and that future, then returns through each of them. The hot path's
handler answering for itself (``routing.make_handler``) and a purchase in one coroutine
(``Purchases.purchase``) each take one such layer off; a layer is too small for a wrk
window on this machine to resolve, so it is timed here alone, on uvloop and with the
collector's settings (``tune_gc``) as the server runs: ``--tasks`` tasks, each awaiting
a chain of ``depth`` coroutines down to a future, all parked, then all resolved and
gathered. The process's CPU per task, median of the rounds (depths alternating in
order); the cost of a layer is the least-squares slope over the depths.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from dropgate.gcsettings import tune_gc

Layer = Callable[[list[asyncio.Future[int]]], Coroutine[Any, Any, int]]


async def _leaf(futures: list[asyncio.Future[int]]) -> int:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    futures.append(future)
    return await future


def _chain(depth: int) -> Layer:
    """A coroutine function ``depth`` coroutines deep, the last awaiting a future."""
    layer: Layer = _leaf
    for _ in range(depth - 1):
        def wrap(inner: Layer) -> Layer:
            async def outer(futures: list[asyncio.Future[int]]) -> int:
                return await inner(futures)
            return outer
        layer = wrap(layer)
    return layer


async def _per_task_us(depth: int, tasks: int) -> float:
    chain = _chain(depth)
    futures: list[asyncio.Future[int]] = []
    loop = asyncio.get_running_loop()
    started = time.process_time()
    running = [loop.create_task(chain(futures)) for _ in range(tasks)]
    await asyncio.sleep(0)  # every task parks on its future
    for future in futures:
        future.set_result(1)
    results = await asyncio.gather(*running)
    spent = time.process_time() - started
    if sum(results) != tasks:
        raise RuntimeError("a task did not come back with its result")
    return spent / tasks * 1e6


async def measure(depths: list[int], rounds: int, tasks: int) -> dict[int, list[float]]:
    figures: dict[int, list[float]] = {depth: [] for depth in depths}
    for round_no in range(rounds):
        for depth in (depths if round_no % 2 == 0 else depths[::-1]):
            figures[depth].append(await _per_task_us(depth, tasks))
    return figures


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (depth, µs) points."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--depths", default="1,2,3,4,5,6")
    parser.add_argument("--default-gc", action="store_true",
                        help="CPython's collector thresholds, not the server's (tune_gc)")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    if len(depths) < 2:
        parser.error("--depths needs at least two depths")
    if not args.default_gc:
        tune_gc()  # the collector's settings of a serving process
    figures = uvloop.run(measure(depths, args.rounds, args.tasks))
    gc_settings = "CPython's default collector" if args.default_gc else "the server's collector settings"
    print(f"{args.rounds} rounds of {args.tasks:,} tasks on uvloop, {gc_settings}; "
          "CPU µs per task (park, resume, return):\n")
    print("| coroutines between the task and its future | median µs | per round |")
    print("| --- | --- | --- |")
    medians = []
    for depth, values in figures.items():
        medians.append((depth, statistics.median(values)))
        print(f"| {depth} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    print(f"\none more coroutine: {slope(medians):.2f} µs per task (least-squares slope of the medians)")


if __name__ == "__main__":
    main()
