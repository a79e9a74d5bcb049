"""The hostile-client tests (issue 21) as a soak: their long variants, round after round,
against one long-lived server per generation.

    python -m tests.support.hostile_soak                         # 2 minutes, --workers 2 then 1
    python -m tests.support.hostile_soak --minutes 20 --seed 7 --workers 2,1,2
    python -m tests.support.hostile_soak --cycles 1              # one round of each scenario
    make soak HOSTILE_ARGS="--minutes 10"                        # after the fault soak
    make soak-hostile HOSTILE_ARGS="--minutes 10"                # this one alone

Runs ``dropgate serve --no-persister --workers N`` under a 1,024 open-file limit (as
``prlimit --nofile=1024``; short slow-socket timeouts, a tight per-user rate limit) and a
``dropgate persister`` against a private redis-server and a private PostgreSQL (under a
temp dir, removed afterwards), and repeats, in a random order each cycle, the scenarios
of tests/support/hostile.py, each checking its invariant:

- ``slow_sockets``: a wave of 1,050 to 1,800 idle and dripping sockets (more than the
  server's file limit); every /healthz and API probe answers within 1 s, and every slow
  socket is closed within its timeout;
- ``retry_storm``: on a fresh offer, 20 concurrent and 5 sequential copies of one purchase
  under one Idempotency-Key see only the identical 201 or 409 IDEMPOTENCY_KEY_IN_USE,
  never 429; new work of the same user is still rate-limited;
- ``revocation``: a freshly minted key warms 40 to 80 kept-alive connections and is
  revoked while they use it: none of the 400 or more requests after succeeds;
- ``bad_line_upload``: 20,000 codes and a bad line at the end, into a campaign holding 2:
  400 naming line 20,001, and nothing of the file live, in Redis or PostgreSQL;
- ``header_junk``: the parser's refusals, random Latin-1 bytes in header names and values,
  malformed bearers: every one a 4xx in the error shape, without echo.

Each generation of the server (``--workers``, a comma-separated list: one generation
each, the minutes split between them) ends with the kill -9 of its first process when
it has workers (the port stops answering within 5 s, no worker outlives it) and the next
starts on the same port with a rotated admin key: only the new generation serves. The run
ends with ``dropgate reconcile`` exiting 0. One progress line per round; the exit status
is 1, and the last line names the first broken invariant, when one broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from dropgate.engine.keys import Keys
from tests.support.faultlab import ADMIN_KEY, TENANT, Cluster, PrivatePostgres, PrivateRedis, server_port
from tests.support.hostile import (
    SHORT_ENV,
    TIGHT_RATE_ENV,
    buy,
    check_retry_storm,
    error_shape,
    kill9_first_process,
    listeners,
    parser_refusals,
    raw_exchange,
    request_bytes,
    retry_storm,
    revoke_under_warm_caches,
    slow_socket_wave,
)
from tests.support.soak import bring_up, line, show_logs, tear_down

NOFILE = 1024
CODES_IN_FILE = 20_000


@dataclass
class Round:
    """What a scenario gets: the stack, the current admin key, a random source, a number."""

    cluster: Cluster
    admin_key: str
    rng: random.Random
    n: int

    @property
    def url(self) -> str:
        return self.cluster.base_url

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


async def slow_sockets(r: Round) -> str:
    return await slow_socket_wave(r.cluster.api_port, r.admin_key, per_kind=r.rng.randint(350, 600),
                                  drip_s=round(r.rng.uniform(0.3, 1.0), 2))


async def retry_storm_round(r: Round) -> str:
    offer, user = f"storm{r.n}", f"stormer{r.n}"
    headers = r.cluster.service_headers
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.post(r.url + "/v1/offers", headers=headers, json={
                "offer_id": offer, "event_id": "storm", "name": "Storm", "price": "1.00",
                "currency": "usd", "inventory_total": 10}) as resp:
            assert resp.status == 201, f"creating offer {offer}: {resp.status} {await resp.text()}"
        answers = await retry_storm(http, r.url, offer, headers, user, f"order-{r.n}")
        check_retry_storm(answers)
        fresh = [status for status, _ in
                 [await buy(http, r.url, offer, {**headers, "Idempotency-Key": f"new-{r.n}-{i}"}, user)
                  for i in range(3)]]
    assert 429 in fresh, f"new work of the user was not rate-limited any more: {fresh}"
    statuses = [status for status, _ in answers]
    return f"offer {offer}: 25 copies answered {statuses.count(201)} x 201, {statuses.count(409)} x 409; " \
           f"then new keys {fresh}"


async def revocation(r: Round) -> str:
    return await revoke_under_warm_caches(r.url, r.admin, TENANT, connections=r.rng.randint(40, 80), after_n=400)


async def _count(http: aiohttp.ClientSession, r: Round, campaign: str) -> dict[str, int] | None:
    async with http.get(f"{r.url}/v1/campaigns/{campaign}/codes/count",
                        headers=r.cluster.service_headers) as resp:
        if resp.status == 404:
            return None
        assert resp.status == 200, f"counting {campaign}: {resp.status} {await resp.text()}"
        return dict(await resp.json())


async def bad_line_upload(r: Round) -> str:
    campaign = f"bad{r.n}"
    csv = {**r.cluster.service_headers, "Content-Type": "text/csv"}
    url = f"{r.url}/v1/campaigns/{campaign}/codes?type=tm"
    data = "".join(f"B{r.n}X{i:05d}\n" for i in range(CODES_IN_FILE)) + r.rng.choice(
        ["not a code!\n", "B1,tm,extra\n", '"unclosed\n', "caf\u00e9\n"])
    async with aiohttp.ClientSession() as http:
        async with http.post(url, headers=csv, data=b"OLD1\nOLD2\n") as resp:
            assert resp.status == 200, f"the 2 first codes: {resp.status} {await resp.text()}"
        async with http.post(url, headers=csv, data=data.encode()) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["code"] == "VALIDATION_ERROR", \
                f"a bad last line was not refused: {resp.status} {body}"
            assert body["details"]["line"] == CODES_IN_FILE + 1, f"the refusal names another line: {body}"
        counts = await _count(http, r, campaign)
    assert counts == {"available": 2, "reserved": 0, "assigned": 0}, f"part of a refused file is live: {counts}"
    keys = Keys(r.cluster.name, 4)
    async with r.cluster.redis_client() as redis:
        records = int(await redis.hlen(keys.tenant(TENANT).codes_records(campaign)))
        staged = [k async for k in redis.scan_iter(match=f"{r.cluster.name}:*:upload:*")]
    assert records == 2 and not staged, f"a refused file left {records - 2} records, staged keys {staged[:3]}"
    await r.cluster.wait_drained()
    conn = await asyncpg.connect(r.cluster.postgres.url, server_settings={"search_path": r.cluster.name})
    try:
        rows = await conn.fetchval("SELECT count(*) FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2",
                                   TENANT, campaign)
        pending = await conn.fetchval("SELECT count(*) FROM campaign_pending_uploads")
    finally:
        await conn.close()
    assert (rows, pending) == (2, 0), f"a refused file left PostgreSQL rows: {rows} codes, {pending} pending uploads"
    return f"campaign {campaign}: {CODES_IN_FILE:,} codes + {data.splitlines()[-1]!r} refused at line " \
           f"{CODES_IN_FILE + 1:,}; 2 codes live in Redis and PostgreSQL"


def _junk(rng: random.Random) -> bytes:
    """1 to 24 bytes of 0x80-0xff: Latin-1, never valid in a header as ASCII."""
    return bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 24)))


async def header_junk(r: Round) -> str:
    port, rng = r.cluster.api_port, r.rng
    sent = 0
    for raw in parser_refusals(r.admin_key):
        doc = error_shape(*await raw_exchange(port, raw))
        assert doc["code"] == "VALIDATION_ERROR", f"a parser refusal answered {doc}"
        sent += 1
    body = b'{"user_id": "u1", "quantity": 1}'
    for _ in range(6):
        header = rng.choice([b"Authorization", b"Idempotency-Key", b"X-Tenant-Id", b"X-" + _junk(rng)])
        headers = {b"Authorization": b"Bearer " + r.admin_key.encode(), b"X-Tenant-Id": TENANT.encode(),
                   b"Content-Type": b"application/json"}
        junk = _junk(rng)
        headers[header] = b"Bearer " + junk if header == b"Authorization" else junk
        raw = request_bytes("POST", "/v1/offers/hot/purchase", list(headers.items()), body)
        status, answer_headers, answer = await raw_exchange(port, raw)
        doc = error_shape(status, answer_headers, answer)
        expected = 401 if header == b"Authorization" else 400
        assert status == expected, f"{header!r}: {junk!r} answered {status} {doc}, not {expected}"
        sent += 1
    for token in [b"*", b"{", b"dg_{_x", b"dg_" + b"k" * 80 + b"_secret", b"a b", b"dg_" + _junk(rng)]:
        status, answer_headers, answer = await raw_exchange(
            port, request_bytes("GET", f"/v1/tenants/{TENANT}", [(b"Authorization", b"Bearer " + token)]))
        doc = error_shape(status, answer_headers, answer)
        assert (status, doc["code"]) == (401, "UNAUTHORIZED"), f"bearer {token!r} answered {status} {doc}"
        assert answer_headers.get("www-authenticate") == 'Bearer realm="dropgate"', answer_headers
        sent += 1
    status, _, _ = await raw_exchange(port, request_bytes("GET", "/healthz", []))
    assert status == 200, f"/healthz answered {status} after the junk"
    return f"{sent} junk requests, each a 4xx in the error shape; /healthz still 200"


SCENARIOS: dict[str, Callable[[Round], Awaitable[str]]] = {
    "slow_sockets": slow_sockets,
    "retry_storm": retry_storm_round,
    "revocation": revocation,
    "bad_line_upload": bad_line_upload,
    "header_junk": header_junk,
}


async def next_generation(cluster: Cluster, workers: int | None, old_key: str) -> str:
    """End the API's generation (kill -9 of its first process when it has workers, else
    SIGTERM) and, unless ``workers`` is None, start the next on the same port with a
    rotated admin key: only the new generation serves. The new admin key."""
    assert cluster.api is not None
    old = cluster.api
    port = cluster.api_port
    old_pids = listeners(port)
    if cluster.workers > 1:
        await kill9_first_process(old.proc, port)
    old.stop()
    if workers is None:
        return old_key
    new_key = f"hostile-soak-admin-{uuid.uuid4().hex}"
    cluster.settings["DROPGATE_ADMIN_KEY"] = new_key
    cluster.workers = workers
    await cluster.start_api(port=port)
    serving = listeners(port)
    assert serving and not serving & old_pids, f"the old generation still listens: {serving & old_pids}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async def status(key: str) -> int:
            async with http.get(f"{cluster.base_url}/v1/tenants/{TENANT}",
                                headers={"Authorization": f"Bearer {key}"}) as r:
                return r.status
        rotated_out = await asyncio.gather(*(status(old_key) for _ in range(40)))
        current = await asyncio.gather(*(status(new_key) for _ in range(10)))
    assert set(rotated_out) == {401}, f"the rotated-out admin key was served: {sorted(set(rotated_out))}"
    assert set(current) == {200}, f"the new admin key was refused: {sorted(set(current))}"
    return new_key


async def hostile_soak(minutes: float, seed: int, generations: list[int], scenarios: list[str],
                       cycles: int | None) -> int:
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="dropgate-hostile-soak-", dir="/tmp"))
    postgres = PrivatePostgres(folder / "pg")
    redis = PrivateRedis(folder / "redis")
    cluster = Cluster(folder=folder, redis=redis, postgres=postgres, name="hs" + uuid.uuid4().hex[:6], codes={},
                      settings={**SHORT_ENV, **TIGHT_RATE_ENV}, workers=generations[0], nofile=NOFILE,
                      api_port=server_port())
    started = time.monotonic()
    counts: dict[str, int] = {}
    where = "starting the servers"
    keep = False
    try:
        await bring_up(cluster)
        admin_key = ADMIN_KEY
        span = "one cycle per generation" if cycles is not None and cycles == 1 else (
            f"{cycles} cycles per generation" if cycles is not None else f"{minutes} min")
        line(started, f"hostile soak: seed {seed}, {span}, --workers {','.join(map(str, generations))}, "
                       f"open-file limit {NOFILE}, scenarios {', '.join(scenarios)}")
        n = 0
        per_generation = minutes * 60 / len(generations)
        for g, workers in enumerate(generations):
            deadline = time.monotonic() + per_generation
            cycle = 0
            while True:
                for name in rng.sample(scenarios, len(scenarios)):
                    if cycles is None and cycle > 0 and time.monotonic() >= deadline:
                        break
                    n += 1
                    where = f"round {n} ({name}, --workers {workers})"
                    note = await SCENARIOS[name](Round(cluster, admin_key, rng, n))
                    counts[name] = counts.get(name, 0) + 1
                    line(started, f"round {n} [--workers {workers}] {name}: {note}")
                cycle += 1
                if (cycles is not None and cycle >= cycles) or (cycles is None and time.monotonic() >= deadline):
                    break
            following = generations[g + 1] if g + 1 < len(generations) else None
            where = f"ending the --workers {workers} generation"
            admin_key = await next_generation(cluster, following, admin_key)
            how = "kill -9 of its first process: the port closed within 5 s, no worker left" if workers > 1 \
                else "SIGTERM"
            then = f"; --workers {following} on the same port, only it serves (rotated admin key)" \
                if following is not None else ""
            line(started, f"generation --workers {workers} ended by {how}{then}")
        where = "the final reconcile"
        await cluster.wait_drained()
        report = await cluster.reconcile("--wait", "10")
        assert report["exit_code"] == 0, \
            f"dropgate reconcile exited {report['exit_code']}: {json.dumps(report, indent=1)[:3000]}"
        line(started, f"dropgate reconcile: exit 0; rounds: {counts}")
        print("hostile soak: PASSED", flush=True)
        return 0
    except Exception as exc:
        show_logs(cluster, folder)
        kind = "" if isinstance(exc, AssertionError) else f"{type(exc).__name__}: "
        line(started, f"hostile soak: FAILED in {where}: {kind}{exc}")
        keep = True
        return 1
    finally:
        tear_down(cluster, redis, postgres, folder, keep=keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hostile_soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="the whole run, split between generations")
    parser.add_argument("--cycles", type=int, default=None,
                        help="instead of --minutes: this many cycles (one round of each scenario) per generation")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", default="2,1", help="one server generation per entry, e.g. 2,1")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset of " + ", ".join(SCENARIOS))
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown or not scenarios:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}" if unknown else "no scenarios")
    try:
        generations = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--workers: comma-separated integers, got {args.workers!r}")
    if not generations or min(generations) < 1:
        parser.error("--workers: at least one generation, each of at least 1 worker")
    if args.cycles is not None and args.cycles < 1:
        parser.error("--cycles must be at least 1")
    return asyncio.run(hostile_soak(args.minutes, seed, generations, scenarios, args.cycles))


if __name__ == "__main__":
    sys.exit(main())
