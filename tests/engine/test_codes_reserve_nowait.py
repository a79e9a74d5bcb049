"""Issue #19's slow-reservation report: a reservation never waits to be batched.

The report: code reservations through ``dropgate serve`` at ~32 requests/s with a p50
of ~215 ms at 16 wrk connections while the server idled, as if each request waited on
a timer. The mechanism that would do that is the coalescing Batcher holding a lone
request back to gather company. These tests pin the mechanism down without timing
anything: a reservation's script call starts within a few event-loop passes of its
enqueue (counted by a ticker task that yields once per pass, so a timer of even a
millisecond would let hundreds of passes go by), a run of sequential requests on one
connection costs exactly one script call each, and a crowd still shares calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from dropgate.engine.codes import Reservation
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.codes import upload_csv

SEQUENTIAL = 40


class _Passes:
    """Counts event-loop passes: a task that does nothing but yield."""

    def __init__(self) -> None:
        self.n = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.n += 1
            await asyncio.sleep(0)

    def __enter__(self) -> _Passes:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _instrument(runtime: Runtime, passes: _Passes) -> tuple[list[int], list[int]]:
    """Wrap the reservations' Batcher: the loop pass of every enqueue, and for every
    script call (flush) the passes since the oldest enqueue it serves."""
    batcher: Any = runtime.codes.reservations
    enqueued: list[int] = []
    waits: list[int] = []
    sizes: list[int] = []
    enqueue, flush = batcher.enqueue, batcher._flush

    def enqueue_counted(key: Any, item: Any, **kw: Any) -> Any:
        enqueued.append(passes.n)
        return enqueue(key, item, **kw)

    async def flush_counted(key: Any, items: list[Any]) -> Sequence[Reservation | BaseException]:
        oldest = enqueued[sum(sizes)]
        sizes.append(len(items))
        waits.append(passes.n - oldest)
        results: Sequence[Reservation | BaseException] = await flush(key, items)
        return results

    batcher.enqueue, batcher._flush = enqueue_counted, flush_counted
    return waits, sizes


async def test_sequential_reservations_on_one_connection_each_go_out_at_once(
        api: Api, runtime: Runtime) -> None:
    """40 reservations one after another on one keep-alive connection: 40 script calls of
    one request each, every one started within 3 loop passes of its enqueue (no timer,
    no drain waiting for company), and 40 distinct codes."""
    status, _ = await upload_csv(api, "seq", "tm", "\n".join(f"S{i}" for i in range(SEQUENTIAL + 5)))
    assert status == 200
    with _Passes() as passes:
        waits, sizes = _instrument(runtime, passes)
        codes: list[str] = []
        for _ in range(SEQUENTIAL):
            status, body = await api.call("POST", "/v1/campaigns/seq/reservations",
                                          json={"type": "tm", "count": 1})
            assert status == 200, body
            codes += body["codes"]
    assert len(set(codes)) == SEQUENTIAL
    assert sizes == [1] * SEQUENTIAL  # one script call per request: nothing held back to batch
    assert max(waits) <= 3, waits


async def test_a_crowd_still_shares_script_calls_and_none_waits_for_a_timer(runtime: Runtime) -> None:
    """200 concurrent reservations of one pool: every one served, distinct codes, fewer
    script calls than requests, and each call started within a few passes of its oldest
    request's enqueue: the first call goes at once."""
    await runtime.codes.upload("acme", "crowd", "tm", _chunks([f"C{i}" for i in range(250)]))
    await runtime.codes.reserve("acme", "crowd", "tm", 1)  # the campaign check is cached from here
    with _Passes() as passes:
        waits, sizes = _instrument(runtime, passes)
        results = await asyncio.gather(*(runtime.codes.reserve("acme", "crowd", "tm", 1)
                                         for _ in range(200)))
    codes = [c for r in results for c in r.codes]
    assert len(codes) == len(set(codes)) == 200
    assert (await runtime.codes.count("acme", "crowd", "tm")).reserved == 201
    assert sum(sizes) == 200
    assert len(sizes) < 200  # coalesced
    assert waits[0] <= 3, waits  # the first call goes at once


async def _chunks(codes: list[str]) -> AsyncIterator[bytes]:
    yield ("\n".join(codes) + "\n").encode()
