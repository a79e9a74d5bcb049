"""The logs' reads as the server sent them, on real Redis: the persister's and the
dispatcher's XREADGROUP reply is not parsed by redis-py (``redisclient.connect``), and
``claims.by_partition`` gives from it exactly the events that redis-py's parsed reply, and
the entries read back one by one, give."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from dropgate.engine.events import Event, OfferPurchase, parse_entry
from dropgate.engine.redisclient import connect
from dropgate.persistence.claims import by_partition, create_group, read_new
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.persistence.test_persister_batch import _hold


async def _crowd(runtime: Runtime) -> int:
    """40 holds and 10 invite uses in tenant t1's partition; returns that partition."""
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.offers.create("t1", offer_id="o1", event_id="drop", name="o1", price_minor=500,
                                currency="usd", total=100, max_per_order=3, expires_at_ms=None, active=True)
    await runtime.invites.create("t1", code="HOT", max_uses=0, expires_at_ms=None, active=True)
    await _hold(runtime, "t1", "o1", [f"u{i}" for i in range(40)])
    for i in range(10):
        await runtime.invites.redeem("t1", "HOT", user_id=f"v{i}")
    return runtime.keys.tenant("t1").partition


async def _read(redis: Redis, runtime: Runtime, p: int, group: str) -> tuple[Any, list[Event[Any]]]:
    await create_group(redis, runtime.keys.log(p), group)
    streams, failure = await read_new(redis, runtime.keys, [p], group=group, consumer="c",
                                      count=1000, cluster=False)
    assert failure is None
    stream_partition = {runtime.keys.log(p): p}
    [(q, events)] = by_partition(streams, stream_partition)
    assert q == p
    return streams, events


async def test_a_read_as_sent_gives_the_events_of_the_parsed_reply(runtime: Runtime, settings: Settings) -> None:
    p = await _crowd(runtime)
    streams, as_sent = await _read(runtime.redis, runtime, p, "as-sent")
    # the reply as the server sent it: each entry's fields a flat list, not redis-py's dict
    entries = streams[next(iter(streams))] if isinstance(streams, dict) else streams[0][1]
    assert all(isinstance(fields, list) for _, fields in entries), entries[0]

    parsing = Redis.from_url(settings.redis_url)  # redis-py's own parse of the same reply
    try:
        parsed_reply, parsed = await _read(parsing, runtime, p, "parsed")
    finally:
        await parsing.aclose()
    assert all(isinstance(fields, dict) for _, fields in parsed_reply[0][1])
    one_by_one = [parse_entry(p, eid, fields) for eid, fields in await runtime.redis.xrange(runtime.keys.log(p))]

    # the tenant, the offer and the invite saved, then 40 holds and 10 uses
    assert len(as_sent) == 53 and as_sent == parsed == one_by_one
    purchases = [e for e in as_sent if isinstance(e.data, OfferPurchase)]
    assert len(purchases) == 40 and all(e.raw.startswith(b'{"purchase_id":') for e in purchases)
    assert [e.type for e in as_sent].count("invite.redeemed") == 10


async def test_a_deleted_pending_entry_is_skipped_in_either_shape(runtime: Runtime, settings: Settings) -> None:
    """XREADGROUP 0 gives a pending entry deleted since (trimmed, say) with no fields."""
    p = await _crowd(runtime)
    log = runtime.keys.log(p)
    _, events = await _read(runtime.redis, runtime, p, "g")
    await runtime.redis.xdel(log, events[3].id)
    parsing = Redis.from_url(settings.redis_url)
    try:
        for client in (runtime.redis, parsing):  # as sent, and as redis-py parses it
            reply: Any = await client.xreadgroup("g", "c", {log: "0"}, count=1000)
            [(_, again)] = by_partition(reply, {log: p})
            assert again == events[:3] + events[4:], client
    finally:
        await parsing.aclose()


async def test_a_read_as_sent_in_resp2_gives_the_same_events(runtime: Runtime, settings: Settings) -> None:
    """A deployment whose URL asks for RESP2 (``?protocol=2``) gets the reply as a list of
    [stream, entries], not RESP3's mapping: the same events."""
    p = await _crowd(runtime)
    url = settings.redis_url
    assert url is not None
    resp2 = connect(f"{url}{'&' if '?' in url else '?'}protocol=2", max_connections=2, timeout_s=10,
                    pool_wait_s=10)
    try:
        streams, as_resp2 = await _read(resp2, runtime, p, "resp2")
    finally:
        await resp2.aclose()
    assert isinstance(streams, list) and all(isinstance(fields, list) for _, fields in streams[0][1])
    _, as_resp3 = await _read(runtime.redis, runtime, p, "resp3")
    assert len(as_resp2) == 53 and as_resp2 == as_resp3
