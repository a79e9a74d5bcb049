"""The floor of a dropgate hot-path request on aiohttp: ``python -m benchmarks.floor --port N --redis URL``.

Why (issue #19, BENCHMARKS.md "Where each microsecond of a request goes"): the no-op
POST reads a body and answers; a hot-path request must also authenticate its key against
a revocation version read *after* it arrived, decode its body, wait for the script call
its batch shares, and encode its answer. This server does exactly that much and nothing
else, with dropgate's own pieces: ``RevocationClock`` (one ``GET`` per crowd of
requests, each request awaiting its own future), a ``Batcher`` per route (one
``EVALSHA`` per batch of up to 64, its JSON answer decoded by msgspec, one result per
request), a dict of known keys, a msgspec decoder and encoder, on a bare
``web.Application`` (no middleware, no signal, no admission, no metrics, no request id),
uvloop and ``tune_gc`` as ``dropgate serve``. ``--no-revocation`` drops the revocation
wait (unsafe: what that one suspension per request costs). Its CPU per request, beside the no-op's
and dropgate's in the same rounds (``benchmarks.cpu_profile --floor``), is what the
design costs on this stack before any of dropgate's own guarantees: the no-op's CPU
over it is the best CPU efficiency a server of this design can reach here.

It answers any ``POST`` path with a bearer key and a JSON object body (the routes of
``benchmarks.revisions``): 401 without a key it knows (any ``dg_`` key), else 200
``{"ok": true, "n": <the request's place in its batch>}``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import serve_until_sigterm

_SCRIPT = """-- KEYS[1]: a counter; ARGV: one user id per request; returns a JSON list, one entry per request
redis.call('INCRBY', KEYS[1], #ARGV)
local out = {}
for i = 1, #ARGV do out[i] = i end
return cjson.encode(out)
"""


def serve_floor(port: int, redis_url: str, prefix: str, *, revocation: bool = True) -> None:
    import msgspec
    import uvloop
    from aiohttp import web

    from dropgate.engine.actors.batcher import Batcher
    from dropgate.engine.keys import Keys
    from dropgate.engine.redisclient import connect
    from dropgate.engine.revocations import RevocationClock

    decode_answers = msgspec.json.Decoder(list[int]).decode
    encode = msgspec.json.Encoder().encode

    async def run() -> None:
        redis = connect(redis_url, max_connections=32, timeout_s=5.0, pool_wait_s=5.0)
        sha = await redis.script_load(_SCRIPT)
        clock = RevocationClock(redis, Keys(prefix, 16))
        counter = f"{prefix}:floor"

        async def flush(path: str, users: list[str]) -> list[Any]:
            return list(decode_answers(await redis.evalsha(sha, 1, counter, *users)))

        batcher: Batcher[str, str, int] = Batcher(flush, max_batch=64)
        known: dict[str, bool] = {}

        async def handle(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            principal = known.get(token)
            if principal is None:
                if not token.startswith("dg_"):
                    return web.Response(status=401)
                known[token] = principal = True
            if revocation:
                await clock.read(0)  # the key's revocation version, read after this request arrived
            body = msgspec.json.decode(await request.read())
            n = await batcher.enqueue(request.path, str(body.get("user_id") or body.get("customer_id") or ""))
            return web.Response(body=encode({"ok": True, "n": n}), status=200, content_type="application/json")

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        try:
            await serve_until_sigterm(runner, port)
        finally:
            await redis.delete(counter)
            await redis.aclose()

    uvloop.run(run())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", default="floor")
    parser.add_argument("--no-revocation", action="store_true",
                        help="skip the revocation wait (what one suspension per request costs; not a safe design)")
    args = parser.parse_args()
    serve_floor(args.port, args.redis, args.prefix, revocation=not args.no_revocation)
