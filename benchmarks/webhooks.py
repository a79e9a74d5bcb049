"""Webhook deliveries per second to a local receiver, and their lag under a crowd.

    .venv/bin/python -m benchmarks.webhooks [--runs 3] [--events 5000]
    .venv/bin/python -m benchmarks.webhooks --offers-crowd [--runs 3] [--seconds 3] [--clients 1000]

Two shapes, each with one endpoint subscribed to every type and a receiver on
127.0.0.1 that verifies every signature with ``dropgate.client.webhooks.verify``:

- *live*: the dispatcher runs while 256 concurrent callers redeem an invite (one
  entity, so its deliveries are in order, one at a time); deliveries per second
  from the first redemption to the last delivery, and the lag from an event's
  ``created`` to its arrival (median, p99);
- *catch-up*: the events are in the log before the dispatcher starts (far behind:
  it spills to PostgreSQL and delivers from there), over 64 invite codes.

The persister runs alongside, as in ``serve``.

``--offers-crowd`` measures instead the dispatcher's lag during the offers benchmark's
crowd (``benchmarks/offers.py``: ``--clients`` connections buying one hot offer for
``--seconds`` against a dropgate server process, persister off): a dispatcher in this
process, as ``dropgate dispatcher`` beside the server, delivers ``purchase.created`` to
the receiver. It reports the purchases, the largest number of log entries the
dispatcher was behind (sampled every 0.2 s), the event -> arrival lag (median, p99)
and how long after the crowd's last request the last delivery arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime

import msgspec
from aiohttp import web

from benchmarks.common import Stores, fmt_runs, median, private_runtime, private_settings, stores
from benchmarks.offers import Server, _summary, load, purchase_maker
from dropgate.client.webhooks import verify
from dropgate.runtime import Runtime, open_runtime

CONCURRENCY = 256


class _Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.lags: list[float] = []
        self.ids: set[str] = set()
        self.done = asyncio.Event()
        self.expect = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event = verify(body, request.headers["Dropgate-Signature"], self.secret)
        created = datetime.fromisoformat(event["created"].replace("Z", "+00:00")).timestamp()
        self.lags.append(time.time() - created)
        self.ids.add(event["id"])
        if len(self.ids) >= self.expect:
            self.done.set()
        return web.Response(status=204)


async def _setup(rt: Runtime, receiver: _Receiver, url: str) -> None:
    await rt.tenants.create("bench", name="bench", status="active", trial_end_ms=None)
    endpoint = await rt.webhook_store.create_endpoint("bench", url=url, events=["invite.redeemed"],
                                                      description=None, secret="whsec_bench")
    receiver.secret = endpoint.secret


async def one_run(s: Stores, events: int, *, live: bool) -> tuple[float, float, float]:
    receiver = _Receiver()
    receiver.expect = events
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with private_runtime(s, dispatcher_enabled=False, webhook_allow_private=True,
                                   redis_max_connections=64) as rt:
            await _setup(rt, receiver, url)
            codes = ["OPEN"] if live else [f"C{i}" for i in range(64)]
            for code in codes:
                await rt.invites.create("bench", code=code, max_uses=0, expires_at_ms=None, active=True)
            dispatcher = rt.new_dispatcher(name="bench")
            queue = iter(range(events))

            async def caller() -> None:
                for i in queue:
                    await rt.invites.redeem("bench", codes[i % len(codes)], user_id=f"u{i}")

            task: asyncio.Task[None] | None = None
            if live:
                task = asyncio.create_task(dispatcher.run())
            started = time.monotonic()
            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
            if not live:
                started = time.monotonic()
                task = asyncio.create_task(dispatcher.run())
            await asyncio.wait_for(receiver.done.wait(), 600)
            elapsed = time.monotonic() - started
            await dispatcher.close()
            assert task is not None
            await asyncio.wait_for(task, 60)
            lags = sorted(receiver.lags)
            return events / elapsed, median(lags), lags[int(len(lags) * 0.99) - 1]
    finally:
        await runner.cleanup()


async def offers_crowd_run(s: Stores, *, seconds: float, clients: int) -> dict[str, float]:
    """One offers crowd with the dispatcher delivering ``purchase.created`` beside it."""
    receiver = _Receiver()
    receiver.expect = 1 << 62  # known after the crowd
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with private_settings(s, tenant_concurrency=100_000, tenant_admission=100_000,
                                    persister_enabled=False, dispatcher_enabled=False,
                                    redis_max_connections=64, webhook_allow_private=True) as settings:
            server = Server(["--dropgate", msgspec.json.encode(settings).decode(),
                             "--inventory", str(1_000_000_000)])
            try:
                async with open_runtime(settings, run_persister=False, run_dispatcher=False) as rt:
                    endpoint = await rt.webhook_store.create_endpoint(
                        "bench", url=url, events=["purchase.created"], description=None,
                        secret="whsec_bench")
                    receiver.secret = endpoint.secret
                    dispatcher = rt.new_dispatcher(name="bench")
                    task = asyncio.create_task(dispatcher.run())
                    behind: list[int] = []
                    crowd_on = True

                    async def sample() -> None:
                        while crowd_on:
                            behind.append(await dispatcher.behind())
                            await asyncio.sleep(0.2)
                    sampler = asyncio.create_task(sample())
                    w = await load(server.port, purchase_maker(server.key, "wh"), clients=clients,
                                   seconds=seconds)
                    crowd_end = time.monotonic()
                    crowd_on = False
                    await sampler
                    bad = {k: v for k, v in w.statuses.items() if k != 201}
                    if bad:
                        raise RuntimeError(f"unexpected statuses {w.statuses}")
                    bought = w.total  # every answer (warm-up too) was a hold: one event each
                    receiver.expect = bought
                    if len(receiver.ids) >= bought:
                        receiver.done.set()
                    await asyncio.wait_for(receiver.done.wait(), 900)
                    after_s = time.monotonic() - crowd_end
                    await dispatcher.close()
                    await asyncio.wait_for(task, 60)
            finally:
                server.stop()
        lags = sorted(receiver.lags)
        return {"purchases": bought, "per_s": _summary(w)[0],
                "behind_max": max(behind or [0]), "lag_p50_ms": median(lags) * 1000,
                "lag_p99_ms": lags[int(len(lags) * 0.99) - 1] * 1000, "after_s": after_s}
    finally:
        await runner.cleanup()


async def offers_crowd(s: Stores, runs: int, seconds: float, clients: int) -> None:
    results = []
    for run in range(runs):
        r = await offers_crowd_run(s, seconds=seconds, clients=clients)
        results.append(r)
        print(f"  run {run + 1}: {r['purchases']:,.0f} purchases ({r['per_s']:,.0f}/s in the window); "
              f"dispatcher behind at most {r['behind_max']:,.0f} entries; lag median "
              f"{r['lag_p50_ms']:,.0f} ms, p99 {r['lag_p99_ms']:,.0f} ms; last delivery "
              f"{r['after_s']:.1f} s after the crowd", flush=True)
    print(f"offers crowd ({clients} clients, {seconds}s) with the dispatcher delivering purchase.created; "
          f"medians of {runs} runs:")
    for key in ("purchases", "per_s", "behind_max", "lag_p50_ms", "lag_p99_ms", "after_s"):
        print(f"  {key}: {median([r[key] for r in results]):,.1f}  (runs: "
              + ", ".join(f"{r[key]:,.1f}" for r in results) + ")")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--offers-crowd", action="store_true",
                        help="the dispatcher's lag during the offers benchmark's crowd")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    s = stores()
    if args.offers_crowd:
        try:
            await offers_crowd(s, args.runs, args.seconds, args.clients)
        finally:
            if s.stack is not None:
                s.stack.close()
        return
    live, catch_up, lag50, lag99 = [], [], [], []
    for _ in range(args.runs):
        per_s, p50, p99 = await one_run(s, args.events, live=True)
        live.append(per_s)
        lag50.append(p50 * 1000)
        lag99.append(p99 * 1000)
        catch_up.append((await one_run(s, args.events, live=False))[0])
    print(f"webhook deliveries to a local receiver, {args.events} events per run")
    print(f"  live, one entity, {CONCURRENCY} callers: {fmt_runs(live)}; lag median "
          f"{median(lag50):.0f} ms, p99 {median(lag99):.0f} ms")
    print(f"  catch-up from PostgreSQL, 64 entities:  {fmt_runs(catch_up)}")
    if s.stack is not None:
        s.stack.close()


if __name__ == "__main__":
    asyncio.run(main())
