"""Replay by ``Idempotency-Key`` on every route of ``models/idempotency.REPLAYED_BY_KEY``.

For each route: the same key twice gives the identical answer (bytes, status, the
``Idempotent-Replayed`` header on the repeat) and one effect, counted in Redis or
PostgreSQL; the key with another body is 422 ``IDEMPOTENCY_KEY_REUSED``; a refusal
is replayed too. 50 concurrent copies of one ledger payment under one key make one
payment, and every answer is the first one's or 409 ``IDEMPOTENCY_KEY_IN_USE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from dropgate.engine.context import EngineContext
from dropgate.engine.idempotency import Replay, key_digest, request_digest, stale_after_ms
from dropgate.errors import IdempotencyKeyInUse
from dropgate.http.routes import ROUTE_TABLES
from dropgate.models.idempotency import REPLAYED_BY_KEY
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.codes import upload_csv

SLOT = {"resource_id": "court-1", "slot_start": "2031-06-01T09:00:00Z",
        "slot_end": "2031-06-01T10:00:00Z"}


async def send(api: Api, path: str, body: dict[str, Any], key: str | None) -> tuple[int, bytes, bool]:
    """(status, body bytes, replayed?) of one POST."""
    headers = dict(api.service)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await api.client.post(path, json=body, headers=headers)
    return (response.status, await response.read(),
            response.headers.get("Idempotent-Replayed") == "true")


async def pg_count(runtime: Runtime, persister: Persister, sql: str) -> int:
    await persister.drain()
    return int(await runtime.pool.fetchval(sql))


async def _payments(rt: Runtime, p: Persister) -> int:
    return await pg_count(rt, p, "SELECT count(*) FROM payments WHERE tenant_id = 'acme'")


async def _withdrawals(rt: Runtime, p: Persister) -> int:
    return await pg_count(rt, p, "SELECT count(*) FROM withdrawals WHERE tenant_id = 'acme'")


async def _orders(rt: Runtime, p: Persister) -> int:
    return await pg_count(rt, p, "SELECT count(*) FROM orders WHERE tenant_id = 'acme'")


async def _bookings(rt: Runtime, p: Persister) -> int:
    return await pg_count(rt, p, "SELECT count(*) FROM bookings WHERE tenant_id = 'acme'")


async def _balance(rt: Runtime, p: Persister) -> int:
    return await pg_count(rt, p, "SELECT coalesce(sum(balance_minor), 0) FROM tenant_balances "
                                 "WHERE tenant_id = 'acme'")


async def _pay(api: Api, amount: str = "100.00") -> None:
    status, body, _ = await send(api, "/v1/payments",
                                 {"amount": amount, "currency": "usd", "reference": "seed"}, None)
    assert status == 201, body


async def _withdrawal(api: Api, initiator: dict[str, str] | None = None) -> str:
    """A pending withdrawal, by default initiated by another key than ``api.service``."""
    await _pay(api)
    response = await api.client.post("/v1/withdrawals", headers=initiator or await api.new_key("alice"), json={
        "amount": "40.00", "currency": "usd", "initiated_by": "alice"})
    assert response.status == 201
    return str((await response.json())["withdrawal_id"])


Setup = Callable[[Api], Awaitable[dict[str, str]]]
Count = Callable[[Runtime, Persister, Api], Awaitable[int]]


async def _none(api: Api) -> dict[str, str]:
    return {}


async def _funds(api: Api) -> dict[str, str]:
    await _pay(api)
    return {}


async def _pending(api: Api) -> dict[str, str]:
    return {"withdrawal_id": await _withdrawal(api)}


async def _pool(api: Api) -> dict[str, str]:
    status, body = await upload_csv(api, "camp", "tm", "\n".join(f"C{i}" for i in range(20)))
    assert status in (200, 201), body
    return {"campaign_id": "camp"}


async def _invite(api: Api) -> dict[str, str]:
    status, body = await api.call("POST", "/v1/invites", json={"code": "INV", "max_uses": 10})
    assert status == 201, body
    return {"code": "INV"}


async def _promo(api: Api) -> str:
    status, body = await api.call("POST", "/v1/promos", json={
        "code": "PROMO", "bonus": {"kind": "fixed", "amount": "5.00"}, "currency": "usd",
        "per_customer_limit": 10})
    assert status == 201, body
    return {"code": "PROMO"}


async def _reserved(rt: Runtime, p: Persister, api: Api) -> int:
    status, body = await api.call("GET", "/v1/campaigns/camp/codes/count")
    assert status == 200, body
    return int(body["reserved"])


async def _invite_uses(rt: Runtime, p: Persister, api: Api) -> int:
    return int((await api.call("GET", "/v1/invites/INV"))[1]["used_count"])


async def _promo_uses(rt: Runtime, p: Persister, api: Api) -> int:
    return int((await api.call("GET", "/v1/promos/PROMO"))[1]["times_used"])


async def _paid(api: Api) -> dict[str, str]:
    status, body = await api.call("POST", "/v1/offers", json={
        "offer_id": "of1", "event_id": "ev1", "name": "Tee", "price": "25.00", "currency": "usd",
        "inventory_total": 5})
    assert status == 201, body
    status, held = await api.call("POST", "/v1/offers/of1/purchase", json={"user_id": "u1", "quantity": 2})
    assert status == 201, held
    status, paid = await api.call("POST", f"/v1/sandbox/checkout/{held['checkout_session_id']}/complete")
    assert status == 200 and paid["webhook_response"]["outcome"] == "confirmed", paid
    return {"purchase_id": held["purchase_id"]}


async def _refunded_minor(rt: Runtime, p: Persister, api: Api) -> int:
    status, body = await api.call("GET", "/v1/purchases/" + next(iter(
        await rt.redis.hkeys(rt.keys.tenant("acme").purchases()))).decode())
    assert status == 200, body
    return int(body["refunded_amount"].replace(".", ""))


# route -> (path template, setup returning the path's values, body, another body, effect counter, its value after one)
CASES: dict[str, tuple[str, Setup, dict[str, Any], dict[str, Any], Count, int]] = {
    "payment": ("/v1/payments", _none, {"amount": "12.50", "currency": "usd", "reference": "r1"},
                {"amount": "12.51", "currency": "usd", "reference": "r1"},
                lambda rt, p, api: _payments(rt, p), 1),
    "withdrawal": ("/v1/withdrawals", _funds,
                   {"amount": "10.00", "currency": "usd", "initiated_by": "alice"},
                   {"amount": "11.00", "currency": "usd", "initiated_by": "alice"},
                   lambda rt, p, api: _withdrawals(rt, p), 1),
    "approve": ("/v1/withdrawals/{withdrawal_id}/approve", _pending, {"approved_by": "bob"},
                {"approved_by": "carol"}, lambda rt, p, api: _balance(rt, p), 6000),
    "order": ("/v1/orders", _none,
              {"items": [{"sku": "tee", "quantity": 2}], "total": "30", "currency": "eur"},
              {"items": [{"sku": "tee", "quantity": 3}], "total": "45", "currency": "eur"},
              lambda rt, p, api: _orders(rt, p), 1),
    "booking": ("/v1/bookings", _none, {**SLOT, "capacity": 5, "user_id": "u1"},
                {**SLOT, "capacity": 5, "user_id": "u2"}, lambda rt, p, api: _bookings(rt, p), 1),
    "reservation": ("/v1/campaigns/{campaign_id}/reservations", _pool, {"type": "tm", "count": 3},
                    {"type": "tm", "count": 4}, _reserved, 3),
    "invite": ("/v1/invites/{code}/redeem", _invite, {"user_id": "u1"}, {"user_id": "u2"},
               _invite_uses, 1),
    "promo": ("/v1/promos/{code}/redeem", _promo, {"customer_id": "c1", "base_amount": "10.00"},
              {"customer_id": "c1", "base_amount": "20.00"}, _promo_uses, 1),
    "refund": ("/v1/purchases/{purchase_id}/refund", _paid, {"amount": "10.00"}, {"amount": "11.00"},
               _refunded_minor, 1000),
}


def test_every_replayed_route_is_covered() -> None:
    """Every pair of the list (the client's too) is a route that replays by key, and
    has a case here (the purchase: tests/checkout/test_offers_purchase.py)."""
    specs = [spec for table in ROUTE_TABLES for spec in table.specs]
    assert {(s.method, s.path) for s in specs if s.replays_by_key} == REPLAYED_BY_KEY
    assert all("Idempotency-Key" in s.headers for s in specs if s.replays_by_key)
    covered = {("POST", case[0]) for case in CASES.values()}
    assert covered | {("POST", "/v1/offers/{offer_id}/purchase")} == REPLAYED_BY_KEY


@pytest.mark.parametrize("case", sorted(CASES))
async def test_same_key_replays_the_first_answer_with_one_effect(
        case: str, api: Api, runtime: Runtime, persister: Persister) -> None:
    template, setup, body, other, count, once = CASES[case]
    path = template.format(**await setup(api))
    first = await send(api, path, body, "key-1")
    assert first[0] in (200, 201) and not first[2], first
    again = await send(api, path, body, "key-1")
    assert again == (first[0], first[1], True)  # the same bytes, marked as a replay
    assert await count(runtime, persister, api) == once
    status, answer, _ = await send(api, path, other, "key-1")
    assert status == 422 and b'"IDEMPOTENCY_KEY_REUSED"' in answer, answer
    assert await count(runtime, persister, api) == once
    # without a key the route runs as before; another key is another request
    fresh = await send(api, path, body, "key-2")
    assert not fresh[2]


async def test_a_refusal_is_replayed_too(api: Api) -> None:
    wid = await _withdrawal(api, api.service)
    path = f"/v1/withdrawals/{wid}/approve"
    first = await send(api, path, {"approved_by": "alice"}, "four-eyes")
    assert first[0] == 409 and b'"FOUR_EYES_REQUIRED"' in first[1], first
    assert await send(api, path, {"approved_by": "alice"}, "four-eyes") == (409, first[1], True)


async def test_a_request_refused_before_any_change_runs_again_under_its_key(
        api: Api, runtime: Runtime, persister: Persister, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 the route raises itself (nothing applied) is not kept: the client's retry
    with the same key runs the request."""
    monkeypatch.setattr(EngineContext, "backlog_bound", property(lambda self: 0))
    body = {"amount": "1.00", "currency": "usd", "reference": "x"}
    status, raw, _ = await send(api, "/v1/payments", body, "k-lag")
    assert status == 503 and b'"PERSISTENCE_LAGGING"' in raw, raw
    monkeypatch.undo()
    status, raw, replayed = await send(api, "/v1/payments", body, "k-lag")
    assert status == 201 and not replayed, raw
    assert await send(api, "/v1/payments", body, "k-lag") == (201, raw, True)
    assert await _payments(runtime, persister) == 1


async def test_fifty_concurrent_copies_of_one_payment_make_one_payment(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    body = {"amount": "7.00", "currency": "usd", "reference": "crowd"}
    answers = await asyncio.gather(*(send(api, "/v1/payments", body, "crowd-key") for _ in range(50)))
    created = [a for a in answers if a[0] == 201]
    assert created, answers
    first = created[0][1]
    for status, raw, _ in answers:
        assert (status == 201 and raw == first) or (
            status == 409 and b'"IDEMPOTENCY_KEY_IN_USE"' in raw), (status, raw)
    assert sum(1 for a in created if not a[2]) == 1  # one ran; the other 201s are replays
    assert await _payments(runtime, persister) == 1
    assert await _balance(runtime, persister) == 700


async def test_a_running_key_is_in_use_until_it_counts_as_stopped(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    """A record left running (its process died mid-request) answers 409 while young,
    and is taken over once it has run past ``stale_after_ms``."""
    raw = b'{"amount":"3.00","currency":"usd","reference":"stuck"}'
    fingerprint = request_digest(b"POST /v1/payments\n" + raw)
    field = f"acme:{key_digest('stuck')}"
    seconds, micros = await runtime.redis.time()
    now = seconds * 1000 + micros // 1000
    stale = stale_after_ms(runtime.settings.stripe_timeout_s)
    idem = runtime.keys.tenant("acme").offer_idempotency()
    headers = {**api.service, "Idempotency-Key": "stuck", "Content-Type": "application/json"}

    await runtime.redis.hset(idem, field, f"R {now} {now + 60_000} {fingerprint} -")
    response = await api.client.post("/v1/payments", data=raw, headers=headers)
    assert response.status == 409 and (await response.json())["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert await _payments(runtime, persister) == 0

    await runtime.redis.hset(idem, field, f"R {now - stale} {now + 60_000} {fingerprint} -")
    response = await api.client.post("/v1/payments", data=raw, headers=headers)
    assert response.status == 201 and "Idempotent-Replayed" not in response.headers
    first = await response.read()
    response = await api.client.post("/v1/payments", data=raw, headers=headers)
    assert response.status == 201 and await response.read() == first
    assert await _payments(runtime, persister) == 1


async def test_a_crowd_of_keyed_redemptions_shares_its_script_calls(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    """300 redemptions of one invite at once, each under its own key (as dropgate's
    client sends them), for 250 uses: exactly 250 succeed; each record is decided in
    its redemption's own script call (none of idem_batch's), and those calls are shared
    (fewer than the requests); the same 300 again, at once, are all replays of the first
    answers byte for byte and change nothing; PostgreSQL equals Redis."""
    status, body = await api.call("POST", "/v1/invites", json={"code": "CROWD", "max_uses": 250})
    assert status == 201, body
    records, redemptions = runtime.idempotency.records, runtime.invites.redemptions
    items, calls = records.items, redemptions.batches
    path = "/v1/invites/CROWD/redeem"
    first = await asyncio.gather(*(send(api, path, {"user_id": f"u{i}"}, f"k{i}") for i in range(300)))
    assert sorted(a[0] for a in first).count(200) == 250, first
    assert all(a[0] == 409 and b'"EXHAUSTED"' in a[1] for a in first if a[0] != 200)
    assert not any(a[2] for a in first)
    assert sorted(msgspec.json.decode(a[1])["used_count"] for a in first if a[0] == 200) == list(range(1, 251))
    assert records.items == items  # no record call of its own
    assert redemptions.batches - calls < 300, redemptions.batches - calls

    again = await asyncio.gather(*(send(api, path, {"user_id": f"u{i}"}, f"k{i}") for i in range(300)))
    assert again == [(status, raw, True) for status, raw, _ in first]
    assert (await api.call("GET", "/v1/invites/CROWD"))[1]["used_count"] == 250
    await persister.drain()
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM invite_code_uses WHERE tenant_id = 'acme' AND code = 'CROWD'") == 250


async def test_one_call_decides_its_records_in_order(runtime: Runtime) -> None:
    """Within one script call each item reads what the items before it wrote: a finish
    makes a later begin of its key a replay, a release makes it run again, another
    fingerprint is refused and a second begin of a running key is in use; a finish or
    release of a key never begun changes nothing."""
    idem = runtime.idempotency
    tk = runtime.keys.tenant("acme")
    partition = (tk.offer_idempotency(), tk.offer_idempotency_expiry())
    body = b'{"x":"/\xc3\xa9"}'
    answers = await idem._decide(partition, [
        (("b", "acme:a", "fp-a"), b""), (("f", "acme:a", "fp-a", 201, len(body)), body), (("b", "acme:a", "fp-a"), b""),
        (("b", "acme:b", "fp-b"), b""), (("r", "acme:b", "fp-b"), b""), (("b", "acme:b", "fp-b"), b""),
        (("b", "acme:b", "fp-other"), b""), (("b", "acme:b", "fp-b"), b""),
        (("f", "acme:never", "fp", 200, 2), b"{}"), (("r", "acme:never", "fp"), b""),
    ])
    assert answers == ["", "1", '201 {"x":"/\u00e9"}', "", "1", "", "!IDEMPOTENCY_KEY_REUSED",
                       "!IDEMPOTENCY_KEY_IN_USE", "0", "0"]
    # written as one: the records read back from Redis as the call left them
    assert await idem.begin("acme", "a", "fp-a") == Replay(201, body)
    with pytest.raises(IdempotencyKeyInUse):
        await idem.begin("acme", "b", "fp-b")
    assert await runtime.redis.hget(partition[0], "acme:never") is None
