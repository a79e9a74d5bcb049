"""The purchases' and invite uses' appliers send the payloads' own bytes (``raw_rows``, #19).

The persister decodes each payload into its struct when it reads it, and used to encode the
structs again as the statement's one json parameter. It now joins the bytes the scripts
wrote. A script leaves out what a record has not got yet (a hold has no refunds, no
``retaken``), where the struct has its defaults: each row must come out as the struct's
own encoding would have made it, whatever keys the bytes carry, in whatever order and
spelling (Lua's cjson escapes ``/``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec

from dropgate.engine.events import Event, OfferPurchase, parse_entry
from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.persistence.appliers.base import raw_rows
from dropgate.persistence.appliers.offers import offer_purchase
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime

TENANT, OFFER = "t1", "o1"
_COLUMNS = """offer_id, user_id, quantity, status, amount_minor, currency, hold_expires_at,
              checkout_session_id, payment_intent, refund_id, retaken, created_at, updated_at, version,
              units, refunded_minor, refunds"""

# the shapes a purchase record takes in Redis: a fresh hold as the batch script writes it
# (no session, no refunds, no retaken), one with its session spliced in, one cjson
# re-encoded after a settle (keys in another order, '/' escaped), a refunded one
_RECORDS: list[str] = [
    '{{"purchase_id":"{pid}","user_id":"u1","quantity":2,"amount_minor":5000,"offer_version":3,'
    '"tenant_id":"t1","offer_id":"o1","status":"pending","units":"held","refunded_minor":0,"currency":"usd",'
    '"hold_expires_ms":1765090000000,"created_ms":1765089000000,"updated_ms":1765089000000,"version":1}}',
    '{{"purchase_id":"{pid}","user_id":"u2","quantity":1,"amount_minor":2500,"offer_version":4,'
    '"tenant_id":"t1","offer_id":"o1","status":"pending","units":"held","refunded_minor":0,"currency":"usd",'
    '"hold_expires_ms":1765090000000,"created_ms":1765089000000,"updated_ms":1765089000000,"version":1,'
    '"session_id":"cs_1","checkout_url":"http://127.0.0.1:8080/v1/sandbox/checkout/cs_1"}}',
    '{{"version":2,"status":"paid","units":"sold","currency":"usd","offer_id":"o1","tenant_id":"t1",'
    '"checkout_url":"http:\\/\\/127.0.0.1:8080\\/v1\\/sandbox\\/checkout\\/cs_3","session_id":"cs_3",'
    '"payment_intent":"pi_3","retaken":true,"purchase_id":"{pid}","user_id":"u3","quantity":1,'
    '"amount_minor":2500,"offer_version":9,"refunded_minor":0,"hold_expires_ms":1765090000000,'
    '"created_ms":1765089000000,"updated_ms":1765089500000,"refunds":{{}}}}',
    '{{"purchase_id":"{pid}","tenant_id":"t1","offer_id":"o1","user_id":"u4","quantity":3,"status":"refunded",'
    '"amount_minor":7500,"currency":"usd","hold_expires_ms":1765090000000,"created_ms":1765089000000,'
    '"updated_ms":1765089900000,"version":4,"session_id":"cs_4","payment_intent":"pi_4","refund_id":"re_b",'
    '"offer_version":12,"units":"none","refunded_minor":7500,"refunds":{{"re_a":5000,"re_b":2500}}}}',
]


def _event(raw: bytes, version: int) -> Event[Any]:
    """The event as the persister reads it from the log."""
    event = parse_entry(0, f"1-{version}", {b"t": b"offer.purchase", b"e": b"purchase:t1:x",
                                             b"v": str(version).encode(), b"d": raw})
    assert isinstance(event.data, OfferPurchase), event.data  # decoded: it reaches the applier
    return event


async def _row(conn: asyncpg.Connection, pid: str) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM offer_purchases WHERE purchase_id = $1", pid)
    assert row is not None, pid
    return dict(row)


async def test_each_record_shape_persists_as_its_struct_does(runtime: Runtime, persister: Persister) -> None:
    await runtime.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
    await runtime.offers.create(TENANT, offer_id=OFFER, event_id="drop", name="n", price_minor=2500,
                                currency="usd", total=1000, max_per_order=5, expires_at_ms=None, active=True)
    await persister.drain()
    async with runtime.pool.acquire() as conn:
        for i, shape in enumerate(_RECORDS):
            raw = shape.format(pid=f"raw{i}").encode()
            event = _event(raw, msgspec.json.decode(raw)["version"])
            # the same record through the struct: encoded again, as before raw_rows
            struct = msgspec.structs.replace(event.data, purchase_id=f"enc{i}")
            encoded = _event(msgspec.json.encode(struct), struct.version)
            in_code = Event(id="1-9", partition=0, type="offer.purchase", entity="purchase:t1:x",
                            version=struct.version, data=msgspec.structs.replace(struct, purchase_id=f"code{i}"))
            assert raw_rows([in_code]) == msgspec.json.encode([in_code.data]).decode()  # no bytes: its struct
            async with conn.transaction():
                await offer_purchase(conn, [event, encoded, in_code])
            from_raw = await _row(conn, f"raw{i}")
            assert from_raw == await _row(conn, f"enc{i}") == await _row(conn, f"code{i}"), shape
        # the defaults the hold's bytes leave out, and what the others carry
        assert (await _row(conn, "raw0"))["retaken"] is False
        assert (await _row(conn, "raw0"))["refunds"] == "{}"
        assert (await _row(conn, "raw0"))["checkout_session_id"] is None
        assert (await _row(conn, "raw2"))["retaken"] is True
        assert msgspec.json.decode((await _row(conn, "raw3"))["refunds"]) == {"re_a": 5000, "re_b": 2500}
        # the trigger counted every row: each of the four shapes three times over
        held = await conn.fetchval("SELECT reserved FROM offers WHERE offer_id = $1", OFFER)
        assert held == 3 * (2 + 1)  # the two pending holds' quantities


async def test_a_crowd_of_holds_persists_as_redis_holds_it(runtime: Runtime, persister: Persister) -> None:
    """Many concurrent callers, each its own hold; the rows the raw bytes gave equal Redis's records."""
    await runtime.tenants.create(TENANT, name=TENANT, status="active", trial_end_ms=None)
    await runtime.offers.create(TENANT, offer_id=OFFER, event_id="drop", name="n", price_minor=2500,
                                currency="usd", total=250, max_per_order=5, expires_at_ms=None, active=True)

    async def buy(i: int) -> bool:
        [held] = await runtime.offers.purchase_batch(
            TENANT, OFFER, [HoldRequest(purchase_id=new_purchase_id(), user_id=f"u{i}", quantity=1)], [],
            hold_ttl_ms=1_800_000, rate_interval_ms=0.001, rate_burst=10**6, idem_ttl_ms=86_400_000,
            idem_stale_ms=60_000)
        return bool(held.ok)

    granted = sum(await asyncio.gather(*(buy(i) for i in range(400))))
    assert granted == 250
    await persister.drain()
    records = {k.decode(): msgspec.json.decode(v) for k, v in
               (await runtime.redis.hgetall(runtime.keys.tenant(TENANT).purchases())).items()}
    rows = {r["purchase_id"]: r for r in await runtime.pool.fetch(
        "SELECT purchase_id, user_id, quantity, status, amount_minor, units, refunded_minor, refunds::text, "
        "retaken, version FROM offer_purchases WHERE tenant_id = $1", TENANT)}
    assert rows.keys() == records.keys() and len(rows) == 250
    for pid, p in records.items():
        r = rows[pid]
        assert (r["user_id"], r["quantity"], r["status"], r["amount_minor"], r["units"], r["refunded_minor"],
                r["refunds"], r["retaken"], r["version"]) == (
                    p["user_id"], 1, "pending", 2500, "held", 0, "{}", False, 1), (pid, p, dict(r))
    assert await runtime.pool.fetchval("SELECT reserved FROM offers WHERE offer_id = $1", OFFER) == 250
