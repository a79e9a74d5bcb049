"""The cyclic garbage collector's settings for a long-running process: the API server
and the persister.

Why: CPython's default young-generation threshold (700) runs a collection every few
hundred container allocations, and every tenth of those scans the older objects too.
A server under a crowd allocates that much in a few requests (measured at a quarter of
its CPU in the offers benchmark, before these settings); a persister decoding a batch
of 1,000 events, in a fraction of one batch (1.3-1.7 µs of its CPU per event,
``benchmarks.persister --variants default_gc,after``; BENCHMARKS.md "The request glue,
the machine's bound"). Objects that die by reference counting never need the
collector; the cycles left behind (tasks, futures, exceptions) are still collected, in
larger, rarer passes.
"""

from __future__ import annotations

import gc

GC_THRESHOLD = (20_000, 20, 100)


def tune_gc() -> None:
    """Call once the process has imported and built everything it keeps.

    ``gc.freeze()`` moves what exists now (modules, classes, the app, the runtime) out
    of every future collection, and the thresholds make collections rare (GC_THRESHOLD).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
