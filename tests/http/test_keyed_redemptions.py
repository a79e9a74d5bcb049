"""The hot redemptions decide their ``Idempotency-Key`` records in the script call
that decides their effect (invite redeem, promo redeem, code reservation).

A record is filed with its effect, atomically, so no record is ever left running
between them; a crowd where every key arrives twice at once applies each key once and
answers both copies with the same bytes (one of them marked replayed); a refusal that
changed nothing is not filed; an answer lost after its script ran is the retry's, at
once (with the records begun and finished around the call, the retry was told 409 for
a minute, then ran again); a record left running by a process that died (before this
design) is in use while young and taken over once stale; an answer stored as HTTP bytes
by ``idem_batch`` before the route kept its own records is replayed as it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis

from dropgate.engine.context import EngineContext
from dropgate.engine.idempotency import key_digest, request_digest, stale_after_ms
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.http.test_http_idempotency import send
from tests.support.codes import upload_csv

CAPACITY = 250  # uses (invite, promo) or codes (pool) for the crowds below


def _sent(body: dict[str, Any]) -> bytes:
    """The bytes ``send`` posts for ``body`` (aiohttp's ``json=``): the fingerprint's."""
    return json.dumps(body).encode()


async def _invite(api: Api) -> str:
    status, body = await api.call("POST", "/v1/invites", json={"code": "HOT", "max_uses": CAPACITY})
    assert status == 201, body
    return "/v1/invites/HOT/redeem"


async def _promo(api: Api) -> str:
    status, body = await api.call("POST", "/v1/promos", json={
        "code": "HOT", "bonus": {"kind": "percent", "percent": "12.5"}, "currency": "usd",
        "per_customer_limit": 1, "max_uses": CAPACITY})
    assert status == 201, body
    return "/v1/promos/HOT/redeem"


async def _pool(api: Api) -> str:
    status, body = await upload_csv(api, "hot", "tm", "\n".join(f"H{i:04d}" for i in range(CAPACITY)))
    assert status in (200, 201), body
    return "/v1/campaigns/hot/reservations"


def _invite_body(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i}"}


def _promo_body(i: int) -> dict[str, Any]:
    return {"customer_id": f"c{i}", "base_amount": f"{10 + i}.00"}


def _pool_body(i: int) -> dict[str, Any]:
    return {"type": "tm", "count": 1, "partial": False}


async def _invite_used(runtime: Runtime, api: Api) -> int:
    return int((await api.call("GET", "/v1/invites/HOT"))[1]["used_count"])


async def _promo_used(runtime: Runtime, api: Api) -> int:
    return int((await api.call("GET", "/v1/promos/HOT"))[1]["times_used"])


async def _pool_reserved(runtime: Runtime, api: Api) -> int:
    return int((await api.call("GET", "/v1/campaigns/hot/codes/count"))[1]["reserved"])


async def _invite_rows(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval(
        "SELECT count(*) FROM invite_code_uses WHERE tenant_id = 'acme' AND code = 'HOT'"))


async def _promo_rows(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval(
        "SELECT count(*) FROM promo_code_uses WHERE tenant_id = 'acme' AND code = 'HOT'"))


async def _pool_rows(runtime: Runtime) -> int:
    return int(await runtime.pool.fetchval(
        "SELECT count(*) FROM campaign_codes WHERE tenant_id = 'acme' AND campaign_id = 'hot' "
        "AND status = 'reserved'"))


Setup = Callable[[Api], Awaitable[str]]
Body = Callable[[int], dict[str, Any]]
Used = Callable[[Runtime, Api], Awaitable[int]]
Rows = Callable[[Runtime], Awaitable[int]]
# route -> (setup giving the path, the i-th request's body, the effect in Redis, in PostgreSQL,
#           the refusal of a request past the capacity, the route's success status)
ROUTES: dict[str, tuple[Setup, Body, Used, Rows, bytes, int]] = {
    "invite": (_invite, _invite_body, _invite_used, _invite_rows, b'"EXHAUSTED"', 200),
    "promo": (_promo, _promo_body, _promo_used, _promo_rows, b'"EXHAUSTED"', 201),
    "reservation": (_pool, _pool_body, _pool_reserved, _pool_rows, b'"INSUFFICIENT_CODES"', 200),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_every_key_twice_at_once_applies_once(
        route: str, api: Api, runtime: Runtime, persister: Persister) -> None:
    """300 keys for 250 uses (or codes), each key sent twice, all 600 requests at once:
    exactly 250 keys succeed and 50 are refused; the two copies of a key answer the
    same status and bytes, exactly one of them not a replay; no copy is told 409; the
    records took no call of their own; PostgreSQL equals Redis after the drain, and
    reconcile agrees."""
    setup, body_of, used, rows, refusal, ok = ROUTES[route]
    path = await setup(api)
    records = runtime.idempotency.records.items
    keys = 300
    # the two copies of a key side by side: most share one script call
    answers = await asyncio.gather(*(send(api, path, body_of(i // 2), f"key-{i // 2}")
                                     for i in range(2 * keys)))
    firsts = []
    for i in range(keys):
        a, b = answers[2 * i], answers[2 * i + 1]
        assert (a[0], a[1]) == (b[0], b[1]), (i, a, b)
        assert [a[2], b[2]].count(True) == 1, (i, a, b)
        firsts.append(a)
    assert sum(1 for a in firsts if a[0] == ok) == CAPACITY, firsts
    assert all(a[0] == 409 and refusal in a[1] for a in firsts if a[0] != ok)
    if route == "reservation":
        codes = [c for a in firsts if a[0] == ok for c in msgspec.json.decode(a[1])["codes"]]
        assert len(codes) == len(set(codes)) == CAPACITY
    assert await used(runtime, api) == CAPACITY
    assert runtime.idempotency.records.items == records

    # the same 600 again: all replays, nothing changes
    again = await asyncio.gather(*(send(api, path, body_of(i // 2), f"key-{i // 2}")
                                   for i in range(2 * keys)))
    assert again == [(s, raw, True) for s, raw, _ in firsts for _ in range(2)]
    assert await used(runtime, api) == CAPACITY
    await persister.drain()
    assert await rows(runtime) == CAPACITY
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_the_record_is_filed_done_with_the_effect(route: str, api: Api, runtime: Runtime) -> None:
    """After a keyed request its record is already done (never left running): it holds
    the script's own answer, which a repeat is rendered from byte for byte; another
    body under the key is 422 and changes nothing."""
    setup, body_of, used, _, _, ok = ROUTES[route]
    path = await setup(api)
    first = await send(api, path, body_of(1), "filed")
    assert first[0] == ok and not first[2], first
    raw = await runtime.redis.hget(runtime.keys.tenant("acme").offer_idempotency(),
                                   f"acme:{key_digest('filed')}")
    assert raw is not None
    state, _, _, fingerprint, status, answer = raw.decode().split(" ", 5)
    assert (state, status) == ("D", "0"), raw
    assert fingerprint == request_digest(f"POST {path}\n".encode() + _sent(body_of(1)))
    assert msgspec.json.decode(answer)  # the engine's answer, not the HTTP body
    assert answer.encode() != first[1]
    assert await send(api, path, body_of(1), "filed") == (ok, first[1], True)
    another = body_of(2) if body_of(2) != body_of(1) else {**body_of(1), "count": 2}
    status_other, other, _ = await send(api, path, another, "filed")
    assert status_other == 422 and b'"IDEMPOTENCY_KEY_REUSED"' in other, other
    assert await used(runtime, api) == 1


_PATHS = {"invite": "/v1/invites/HOT/redeem", "promo": "/v1/promos/HOT/redeem",
          "reservation": "/v1/campaigns/hot/reservations"}


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_a_404_for_what_does_not_exist_yet_is_not_filed(
        route: str, api: Api, runtime: Runtime) -> None:
    """A code or campaign that does not exist yet is a 404 that changed nothing: no record
    is filed, and the same key once it exists runs (on every hot route alike; invites
    filed theirs until 2026-12-07, so their retry replayed the 404 for 24 hours)."""
    setup, body_of, used, _, _, ok = ROUTES[route]
    status, raw, _ = await send(api, _PATHS[route], body_of(1), "early")
    assert status == 404 and b'"NOT_FOUND"' in raw, raw
    assert await runtime.redis.hget(runtime.keys.tenant("acme").offer_idempotency(),
                                    f"acme:{key_digest('early')}") is None
    assert await setup(api) == _PATHS[route]
    status, raw, replayed = await send(api, _PATHS[route], body_of(1), "early")
    assert status == ok and not replayed, raw
    assert await send(api, _PATHS[route], body_of(1), "early") == (ok, raw, True)
    assert await used(runtime, api) == 1


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_a_refusal_before_any_change_is_not_filed(
        route: str, api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """503 PERSISTENCE_LAGGING changed nothing: the retry under the same key runs."""
    setup, body_of, used, _, _, ok = ROUTES[route]
    path = await setup(api)
    monkeypatch.setattr(EngineContext, "backlog_bound", property(lambda self: 0))
    status, raw, _ = await send(api, path, body_of(1), "lagging")
    assert status == 503 and b'"PERSISTENCE_LAGGING"' in raw, raw
    assert await runtime.redis.hget(runtime.keys.tenant("acme").offer_idempotency(),
                                    f"acme:{key_digest('lagging')}") is None
    monkeypatch.undo()
    status, raw, replayed = await send(api, path, body_of(1), "lagging")
    assert status == ok and not replayed, raw
    assert await send(api, path, body_of(1), "lagging") == (ok, raw, True)
    assert await used(runtime, api) == 1


async def test_a_rate_limited_promo_is_not_filed_and_a_replay_spends_no_limit(
        api: Api, runtime: Runtime) -> None:
    """A 429 is not filed (the retry runs once the limit allows); a repeat of an
    answered request is answered before the limit: even while the customer is limited,
    and without spending any of it."""
    path = await _promo(api)
    burst = runtime.settings.rate_limit_burst
    first = await send(api, path, _promo_body(1), "mine")
    assert first[0] == 201, first
    limited = None
    for n in range(10 * burst):  # the same customer under other keys, until the limit refuses
        status, body, _ = await send(api, path, _promo_body(1), f"other-{n}")
        if status == 429:
            limited = n
            break
        assert status == 409 and b'"CUSTOMER_LIMIT"' in body, (status, body)
    assert limited is not None and limited >= burst - 1, limited
    assert await runtime.redis.hget(runtime.keys.tenant("acme").offer_idempotency(),
                                    f"acme:{key_digest(f'other-{limited}')}") is None
    for _ in range(3 * burst):  # replays while limited: answered, never 429
        assert await send(api, path, _promo_body(1), "mine") == (201, first[1], True)


async def test_a_stopped_request_s_record_is_in_use_then_taken_over(api: Api, runtime: Runtime) -> None:
    """A record left running (a process that died mid-request, before the route kept
    its records in its script) is 409 while young, and taken over once stale."""
    path = await _invite(api)
    raw = _sent(_invite_body(7))
    fingerprint = request_digest(f"POST {path}\n".encode() + raw)
    field = f"acme:{key_digest('stuck')}"
    seconds, micros = await runtime.redis.time()
    now = seconds * 1000 + micros // 1000
    stale = stale_after_ms(runtime.settings.stripe_timeout_s)
    idem = runtime.keys.tenant("acme").offer_idempotency()

    await runtime.redis.hset(idem, field, f"R {now} {now + 60_000} {fingerprint} -")
    status, body, _ = await send(api, path, _invite_body(7), "stuck")
    assert status == 409 and b'"IDEMPOTENCY_KEY_IN_USE"' in body, body
    assert await _invite_used(runtime, api) == 0

    await runtime.redis.hset(idem, field, f"R {now - stale} {now + 60_000} {fingerprint} -")
    status, body, replayed = await send(api, path, _invite_body(7), "stuck")
    assert status == 200 and not replayed, body
    assert await send(api, path, _invite_body(7), "stuck") == (200, body, True)
    assert await _invite_used(runtime, api) == 1


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_an_answer_stored_as_http_bytes_is_replayed_as_it_was(
        route: str, api: Api, runtime: Runtime) -> None:
    """A record finished by ``idem_batch`` (status and HTTP body) before the route kept
    its records in its own script: a repeat gets those bytes and that status, marked
    replayed, and changes nothing."""
    setup, body_of, used, _, _, _ = ROUTES[route]
    path = await setup(api)
    fingerprint = request_digest(f"POST {path}\n".encode() + _sent(body_of(3)))
    seconds, _ = await runtime.redis.time()
    now = seconds * 1000
    stored = b'{"stored":["before",1]}'
    await runtime.redis.hset(runtime.keys.tenant("acme").offer_idempotency(), f"acme:{key_digest('old')}",
                             f"D {now} {now + 60_000} {fingerprint} 207 ".encode() + stored)
    assert await send(api, path, body_of(3), "old") == (207, stored, True)
    assert await used(runtime, api) == 0


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_an_answer_lost_after_the_script_ran_is_replayed_to_the_retry(
        route: str, api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The script ran (the use, or the codes, and its record, in one step) but its
    answer never reached the API (the connection dropped): the client is told 503, the
    outcome unknown, and its retry under the same key gets the answer of the one run at
    once, marked replayed, never a second effect nor a 409 while a record stays running.
    """
    setup, body_of, used, _, _, ok = ROUTES[route]
    path = await setup(api)
    script = {"invite": "invite_redeem", "promo": "promo_redeem", "reservation": "codes_reserve"}[route]
    raw = runtime.scripts.raw
    lost: list[str] = []

    async def ran_then_lost(name: str, keys: list[str], args: list[Any], **kwargs: Any) -> bytes:
        answer = await raw(name, keys, args, **kwargs)
        if name == script and not lost:
            lost.append(name)
            raise redis.ConnectionError("Connection closed by server.")
        return answer

    monkeypatch.setattr(runtime.scripts, "raw", ran_then_lost)
    status, body, _ = await send(api, path, body_of(1), "lost")
    assert lost and status == 503 and b'"unknown"' in body, (status, body)
    assert await used(runtime, api) == 1  # it did run
    status, body, replayed = await send(api, path, body_of(1), "lost")
    assert status == ok and replayed, (status, body)
    assert await send(api, path, body_of(1), "lost") == (ok, body, True)
    assert await used(runtime, api) == 1
