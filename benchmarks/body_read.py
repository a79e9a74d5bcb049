"""What taking a small request body costs, with aiohttp's ``resume_reading`` after the read
and with the connection's own (``GuardedHandler.resume_reading``: only what was paused).

    .venv/bin/python -m benchmarks.body_read [--rounds 7] [--requests 50000]

Why (issue #19, BENCHMARKS.md "Reading a body resumes nothing"): aiohttp's stream reader
calls the connection's ``resume_reading`` after every read that leaves its buffer under
the low-water mark, paused or not, and the base class then feeds the parser an empty
``data_received`` and the transport a ``resume_reading``: in the profiles, a few µs of every
hot-path request. The effect is smaller than the noise of a wrk window on this machine,
so it is timed here alone, in one process, with no network: each request (a hot route's
POST with its small JSON body) is fed to a ``GuardedHandler`` whose transport only counts
calls, its message taken off the queue as aiohttp's ``start`` takes it, and its body read
as the API reads it (``routing.arrived_body``). Two handler classes differ in
``resume_reading`` alone; the rounds alternate them, and the figure is the median over
``--rounds`` of the mean µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from aiohttp.web_protocol import RequestHandler

from dropgate.http.connections import GuardedHandler, GuardedServer, Limits
from dropgate.http.routing import arrived_body

BODY = b'{"customer_id":"c_0001","base_amount":"40.00"}'
REQUEST = (b"POST /v1/promos/SPRING/redeem HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
           b"Authorization: Bearer sk_0123456789abcdef0123456789abcdef\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class _Transport:
    """Accepts everything, counts the resumes it is asked for."""

    def __init__(self) -> None:
        self.resumes = 0

    def resume_reading(self) -> None:
        self.resumes += 1

    def pause_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _Request:
    """What ``arrived_body`` reads of a request: its body's stream."""

    def __init__(self, content: Any) -> None:
        self.content = content


class _AiohttpResume(GuardedHandler):
    """The connection with aiohttp's own ``resume_reading`` (what main had before)."""

    resume_reading = RequestHandler.resume_reading


def _connection(kind: type[GuardedHandler], loop: asyncio.AbstractEventLoop) -> tuple[GuardedHandler, _Transport]:
    async def never(request: Any) -> Any:
        raise AssertionError("no handler runs here")

    manager = GuardedServer(never, loop=loop, limits=Limits(10.0, 0, 10.0, 1_000_000))
    handler = kind(manager, loop=loop)
    transport = _Transport()
    handler.connection_made(transport)  # type: ignore[arg-type]
    if handler._task_handler is not None:  # aiohttp's ``start``, which would take the messages
        handler._task_handler.cancel()
    return handler, transport


def _time(handler: GuardedHandler, requests: int) -> float:
    """Mean µs per request: fed, taken off the queue, its body read."""
    parser = handler._parser
    assert parser is not None
    messages = handler._messages
    started = time.perf_counter()
    for _ in range(requests):
        handler.data_received(REQUEST)
        _, payload = messages.popleft()
        parser.message_consumed()
        raw = arrived_body(_Request(payload), len(BODY), 1 << 20)  # type: ignore[arg-type]
        if raw != BODY:
            raise RuntimeError(f"read {raw!r}")
    return (time.perf_counter() - started) / requests * 1e6


async def measure(rounds: int, requests: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    kinds: dict[str, type[GuardedHandler]] = {"aiohttp's resume_reading": _AiohttpResume,
                                              "GuardedHandler's": GuardedHandler}
    figures: dict[str, list[float]] = {name: [] for name in kinds}
    resumes: dict[str, int] = {}
    for round_no in range(rounds):
        order = list(kinds.items()) if round_no % 2 == 0 else list(kinds.items())[::-1]
        for name, kind in order:
            handler, transport = _connection(kind, loop)
            figures[name].append(_time(handler, requests))
            resumes[name] = transport.resumes
            handler.connection_lost(None)
    await asyncio.sleep(0)  # the cancelled ``start`` tasks end
    for name in kinds:
        print(f"{name:26} transport resumes in the last round: {resumes[name]:,}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.rounds, args.requests))
    before, after = figures["aiohttp's resume_reading"], figures["GuardedHandler's"]
    print(f"\n{args.rounds} rounds of {args.requests:,} requests; µs per request (feed, take, read the body):\n")
    print("| resume_reading | median µs | per round |")
    print("| --- | --- | --- |")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    print(f"\nGuardedHandler's / aiohttp's: {statistics.median(ratios):.3f} (median of the per-round ratios); "
          f"saved {statistics.median(before) - statistics.median(after):.2f} µs per request")


if __name__ == "__main__":
    main()
