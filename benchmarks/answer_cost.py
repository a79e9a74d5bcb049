"""What one JSON answer costs to build and write, ``web.Response`` against ``JsonResponse``.

    .venv/bin/python -m benchmarks.answer_cost [--rounds 5] [--answers 50000]

Why (issue #19 item 4, BENCHMARKS.md "One write per answer"): the profiles put aiohttp's
answer (the response object, then ``prepare`` and ``write_eof`` through half a dozen
coroutines) among the largest shares of a request, the no-op's included. This times
that piece alone, in one process, with no network: each answer is built as the API
builds it (a 201 JSON body, ``X-Request-Id`` and ``Server``), prepared for a request
made by aiohttp's ``make_mocked_request`` and ended, on a ``StreamWriter`` whose
transport only counts bytes. Both ways must hand the transport the same bytes (checked
once, ``Date`` aside); the figure is the median over ``--rounds`` of the mean µs per
answer, and ``stub writer`` is the writer's own creation, in both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import make_mocked_request

from dropgate.http.connections import SERVER_NAME
from dropgate.http.jsonresponse import JsonResponse

BODY = b'{"use_id":"use_0193a8e0c1f2a3b4c5d6e7f8","code":"SPRING","times_used":7,"total_amount":"12.00"}'


class _Transport:
    """Counts what it is given; never closing, never paused."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        if len(self.sent) < 1:
            self.sent.append(bytes(data))

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return False


class _Protocol:
    def __init__(self) -> None:
        self.transport = _Transport()
        self._paused = False


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Drive a coroutine that never suspends (nothing here waits on I/O)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the answer suspended: the stub transport should never pause it")


def ways(loop: asyncio.AbstractEventLoop) -> dict[str, tuple[Callable[[], Coroutine[Any, Any, None]], _Protocol]]:
    request = make_mocked_request("POST", "/v1/promos/SPRING/redeem",
                                  headers={"Content-Type": "application/json"})

    def one(build: Callable[[], web.StreamResponse] | None) -> tuple[Callable[[], Coroutine[Any, Any, None]],
                                                                     _Protocol]:
        protocol = _Protocol()

        async def answer() -> None:
            request._payload_writer = StreamWriter(protocol, loop)  # type: ignore[arg-type]
            if build is not None:
                response = build()
                await response.prepare(request)
                await response.write_eof()
        return answer, protocol

    def plain() -> web.StreamResponse:
        response = web.Response(body=BODY, status=201, content_type="application/json")
        response.headers["X-Request-Id"] = "0123456789abcdef0123456789abcdef"
        response.headers["Server"] = SERVER_NAME
        return response

    def written() -> web.StreamResponse:
        response = JsonResponse(BODY, 201)
        response.identify("0123456789abcdef0123456789abcdef")
        return response

    return {"web.Response": one(plain), "JsonResponse": one(written), "stub writer": one(None)}


def _undated(sent: bytes) -> list[bytes]:
    return [line for line in sent.split(b"\r\n") if not line.startswith(b"Date: ")]


def main(args: argparse.Namespace) -> None:
    loop = asyncio.new_event_loop()
    try:
        runs = ways(loop)
        for answer, _ in runs.values():
            _run(answer())
        sent = {name: protocol.transport.sent[0] for name, (_, protocol) in runs.items() if protocol.transport.sent}
        if _undated(sent["web.Response"]) != _undated(sent["JsonResponse"]):
            raise SystemExit(f"the two ways sent different bytes:\n{sent}")
        results: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (answer, _) in runs.items():
                started = time.perf_counter()
                for _ in range(args.answers):
                    _run(answer())
                results[name].append((time.perf_counter() - started) / args.answers * 1e6)
    finally:
        loop.close()
    print(f"{args.rounds} rounds of {args.answers:,} answers, one process, no network; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| way | µs per answer (median of rounds) | rounds |")
    print("| --- | --- | --- |")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    print("\nthe same bytes both ways (Date aside): checked")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--answers", type=int, default=50_000)
    main(parser.parse_args())
