"""The request glue of a hot-path request, piece by piece, timed in one process.

    .venv/bin/python -m benchmarks.glue [--rounds 7] [--number 100000]

Why (issue #19, BENCHMARKS.md "The request glue, the machine's bound"): ``benchmarks.bare``
puts dropgate's glue (what a hot request pays besides its domain work: the front's
match, the request id, the answer's identity and metrics, admission, the key, the
tenant and scope, the call) at 3-25 µs of a request on a slow host, a spread as wide as a
wrk window's noise. Timed here alone, each piece over a real runtime (the stores of
``benchmarks.common.stores``, a private key prefix and schema) and a real application
(``create_app``), on a mocked purchase request (``make_mocked_request``: no network), a
piece's µs per call is the median over ``--rounds`` of ``--number`` calls. In a server
under a crowd each costs more (its data are out of the caches), so the sum is a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from benchmarks.common import Stores, private_runtime, stores
from dropgate.engine.actors.batcher import PARKED
from dropgate.http.admission import Slot
from dropgate.http.app import create_app
from dropgate.http.appkeys import ADMISSION, FRONT, METRICS
from dropgate.http.auth import bearer_token, own_tenant, require_scope
from dropgate.http.hotpath import HotFront
from dropgate.http.jsonresponse import JsonResponse
from dropgate.http.middleware import answered, begun
from dropgate.http.routing import Call

TENANT, OFFER = "glue", "hot"
PATH = f"/v1/offers/{OFFER}/purchase"
ROUTE = "/v1/offers/{offer_id}/purchase"


async def pieces(s: Stores, rounds: int, number: int) -> list[tuple[str, float]]:
    async with private_runtime(s, persister_enabled=False) as rt:
        from aiohttp.test_utils import make_mocked_request

        await rt.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
        _, token = await rt.api_keys.create(role="service", tenant_id=TENANT, name="glue")
        principal = await rt.api_keys.authenticate(token)
        assert principal is not None
        app = create_app(rt)
        front = app[FRONT].__self__  # type: ignore[attr-defined]
        assert isinstance(front, HotFront)
        admission, metrics = app[ADMISSION], app[METRICS]
        request = make_mocked_request("POST", PATH, app=app, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        found = front.match(request)
        assert found is not None and front.match(request) is found  # kept: the crowd's case
        started, request_id = begun(request)
        scope = "offers:purchase"

        response = JsonResponse(b'{"ok":true}', 201)  # made by the route, bare or not: not glue

        def answer() -> None:
            answered(request, response, request_id, metrics, ROUTE, started)

        def admit() -> None:
            admission.try_enter(TENANT)
            slot = Slot(admission, TENANT)
            parked = PARKED.set(slot.park)
            slot.park()  # the request parks on its batch (a tenant alone: the slot goes back)
            PARKED.reset(parked)
            slot.release()

        timed: list[tuple[str, Callable[[], Any]]] = [
            ("the front's match, kept (a crowd's path seen before)", lambda: front.match(request)),
            ("the front's match, searched (`_search`: every request's, before the match was kept)",
             lambda: front._search(PATH)),
            ("the request id and start (`middleware.begun`)", lambda: begun(request)),
            ("the answer's identity and metrics (`middleware.answered`)", answer),
            ("admission: a slot taken, parked and given back", admit),
            ("the key (`bearer_token`, `ApiKeys.known`)", lambda: rt.api_keys.known(bearer_token(request))),
            ("the tenant and scope (`require_scope`, `own_tenant`)",
             lambda: (require_scope(principal, scope), own_tenant(request, principal))),
            ("the call (`routing.Call`)", lambda: Call(request, None, principal, TENANT, rt, found[1])),
        ]
        results: dict[str, list[float]] = {name: [] for name, _ in timed}
        for _ in range(rounds):
            for name, fn in timed:
                results[name].append(timeit.timeit(fn, number=number) / number * 1e6)
        return [(name, statistics.median(results[name])) for name, _ in timed]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args(argv)
    s = stores()
    try:
        measured = asyncio.run(pieces(s, args.rounds, args.number))
    finally:
        if s.stack is not None:
            s.stack.close()
    print(f"{args.rounds} rounds of {args.number:,} calls per piece; medians, us per call\n")
    print("| piece | us per call |\n| --- | --- |")
    for name, us in measured:
        print(f"| {name} | {us:.3f} |")
    kept = sum(us for name, us in measured if "searched" not in name)
    print(f"\nthe glue of one purchase (every piece but the searched match): {kept:.2f} us")


if __name__ == "__main__":
    main()
