"""The purchase batch: a request's stored response rides with the offer's next holds,
ahead of them, never refused; a lagging backlog refuses the holds, not the responses."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec
import pytest

from dropgate.engine.actors.batcher import Batcher, QueueFull
from dropgate.engine.offers import FinishItem, HoldRequest, HoldResult, Offers, new_purchase_id
from dropgate.engine.promos import new_use_id
from dropgate.errors import PersistenceLagging
from dropgate.ids import check_id, random_hex
from dropgate.money import MAX_MINOR
from dropgate.runtime import Runtime

_LIMITS = dict(hold_ttl_ms=60_000, rate_interval_ms=1.0, rate_burst=100, idem_ttl_ms=86_400_000,
               idem_stale_ms=60_000)


async def test_first_items_lead_the_batch_uncounted_and_never_refused() -> None:
    gate = asyncio.Event()
    seen: list[list[str]] = []

    async def flush(key: str, items: list[str]) -> list[str]:
        seen.append(items)
        await gate.wait()
        return [i.upper() for i in items]

    batcher: Batcher[str, str, str] = Batcher(flush, max_batch=2, max_queue=2)
    waiters = [batcher.enqueue("k", "a")]
    for _ in range(3):
        await asyncio.sleep(0)  # "a" leaves alone and waits in flush
    waiters += [batcher.enqueue("k", x) for x in ("b", "c")]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        batcher.enqueue("k", "d")
    waiters += [batcher.enqueue("k", x, first=True) for x in ("f1", "f2", "f3")]
    await asyncio.sleep(0)  # the queue is full, yet the three first items were taken
    gate.set()
    assert await asyncio.gather(*waiters) == ["A", "B", "C", "F1", "F2", "F3"]
    assert seen[0] == ["a"]
    assert sorted(seen[1][:3]) == ["f1", "f2", "f3"] and seen[1][3:] == ["b", "c"]  # max_batch 2 + firsts
    assert len(seen) == 2


def test_random_hex_is_fresh_and_sized() -> None:
    ids = {random_hex(10) for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(i) == 20 and int(i, 16) >= 0 for i in ids)
    assert len(random_hex(5000)) == 10_000


def test_purchase_and_use_ids_are_in_time_order_unique_and_valid() -> None:
    """``new_ordered_id``: the time first (rows at an index's right edge), random after it."""
    burst = [new_purchase_id() for _ in range(50_000)]  # many within each millisecond
    assert len(set(burst)) == len(burst)
    assert all(check_id(i) and len(i) == 3 + 12 + 16 and int(i[3:], 16) >= 0 for i in burst)
    earlier = new_use_id()
    time.sleep(0.002)
    later = [new_use_id(), new_purchase_id()]
    assert earlier.startswith("use_") and later[1].startswith("pu_")
    assert earlier[4:16] < later[0][4:16] <= later[1][3:15]  # the ms part, a later millisecond
    stamped = int(later[1][3:15], 16)
    assert abs(stamped - time.time() * 1000) < 5_000


async def test_lagging_backlog_refuses_holds_but_stores_responses(runtime: Runtime) -> None:
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.offers.create("t1", offer_id="o1", event_id="e", name="O", price_minor=100,
                                currency="usd", total=10, max_per_order=3, expires_at_ms=None,
                                active=True)
    first = HoldRequest(purchase_id="pu_1", user_id="u1", quantity=2, idem_digest="d1", fingerprint="f1")
    [held] = await runtime.offers.purchase_batch("t1", "o1", [first], [], **_LIMITS)
    assert held.ok == 1 and held.idem == 1
    # the same partition with a backlog bound it is over
    ctx = runtime.offers._ctx
    lagging = Offers(dataclasses.replace(ctx, settings=msgspec.structs.replace(ctx.settings, max_backlog=1)))
    finish = FinishItem(purchase_id="pu_1", session_id="cs_1", checkout_url="https://pay/cs_1",
                        idem_digest="d1", status=201, body=b'{"purchase_id":"pu_1"}')
    second = HoldRequest(purchase_id="pu_2", user_id="u2", quantity=1, idem_digest="d2", fingerprint="f2")
    [refused] = await lagging.purchase_batch("t1", "o1", [second], [finish], **_LIMITS)
    assert refused.err == "PERSISTENCE_LAGGING" and refused.idem == 0 and refused.details["bound"] == 1
    record = await runtime.offers.purchase("t1", "pu_1")
    assert (record.session_id, record.checkout_url) == ("cs_1", "https://pay/cs_1")
    state = await runtime.offers.read("t1", "o1")
    assert state.reserved == 2  # the refused request took nothing
    # the stored response replays; the refused request's key was never marked
    again = HoldRequest(purchase_id="pu_3", user_id="u1", quantity=2, idem_digest="d1", fingerprint="f1")
    retry = HoldRequest(purchase_id="pu_4", user_id="u2", quantity=1, idem_digest="d2", fingerprint="f2")
    replay, fresh = await runtime.offers.purchase_batch("t1", "o1", [again, retry], [], **_LIMITS)
    assert replay.replay == 1 and replay.status == 201 and replay.body == '{"purchase_id":"pu_1"}'
    assert fresh.ok == 1 and fresh.idem == 1


async def test_backlog_bound_holds_per_hold_not_only_per_call(runtime: Runtime) -> None:
    """A call admitted just under the bound takes only as many holds as there is room
    for in the log; the rest are refused untouched (no rate-limit token, no key marked)."""
    await runtime.tenants.create("t2", name="t2", status="active", trial_end_ms=None)
    await runtime.offers.create("t2", offer_id="o2", event_id="e", name="O", price_minor=100,
                                currency="usd", total=100, max_per_order=3, expires_at_ms=None,
                                active=True)
    log = runtime.keys.tenant("t2").log
    ctx = runtime.offers._ctx
    bound = await runtime.redis.xlen(log) + 3  # room for three more events
    near = Offers(dataclasses.replace(ctx, settings=msgspec.structs.replace(ctx.settings, max_backlog=bound)))
    requests = [HoldRequest(purchase_id=f"pu_b{i}", user_id=f"b{i}", quantity=1, idem_digest=f"bd{i}",
                            fingerprint=f"bf{i}") for i in range(10)]
    results = await near.purchase_batch("t2", "o2", requests, [], **_LIMITS)
    assert [r.ok for r in results] == [1, 1, 1] + [0] * 7
    assert all(r.err == "PERSISTENCE_LAGGING" and r.idem == 0 for r in results[3:])
    assert await runtime.redis.xlen(log) == bound  # never past it
    assert (await runtime.offers.read("t2", "o2")).reserved == 3
    # once there is room again, the refused requests go through with the same keys
    results = await runtime.offers.purchase_batch("t2", "o2", requests[3:], [], **_LIMITS)
    assert all(r.ok == 1 and r.idem == 1 for r in results)


async def test_stored_responses_come_back_byte_for_byte(runtime: Runtime) -> None:
    """Idempotency records are plain text with the body last, unescaped: every byte of
    a body comes back as stored; records written by another call decide alike."""
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.offers.create("t1", offer_id="o1", event_id="e", name="O", price_minor=100,
                                currency="usd", total=10, max_per_order=3, expires_at_ms=None,
                                active=True)
    body = '{"error":"a \\"quoted\\" 5 €\\n","x":"with spaces  and\ttabs"}\n  trailing '.encode()
    first = HoldRequest(purchase_id="pu_1", user_id="u1", quantity=1, idem_digest="d1", fingerprint="f1")
    [held] = await runtime.offers.purchase_batch("t1", "o1", [first], [], **_LIMITS)
    assert held.ok == 1 and held.idem == 1
    finish = FinishItem(purchase_id="pu_1", session_id="cs_1", checkout_url="https://pay/cs_1",
                        idem_digest="d1", status=409, body=body)
    await runtime.offers.purchase_batch("t1", "o1", [], [finish], **_LIMITS)
    again = HoldRequest(purchase_id="pu_2", user_id="u1", quantity=1, idem_digest="d1", fingerprint="f1")
    [replay] = await runtime.offers.purchase_batch("t1", "o1", [again], [], **_LIMITS)
    assert (replay.replay, replay.status, replay.body.encode()) == (1, 409, body)

    tk = runtime.keys.tenant("t1")
    seconds, micros = await runtime.redis.time()
    now = seconds * 1000 + micros // 1000
    written = {"d2": f'D {now} {now + 60_000} f2 201 {{"purchase_id":"pu_old"}}',
               "d3": f"R {now} {now + 60_000} f3 -"}
    for digest, record in written.items():
        await runtime.redis.hset(tk.offer_idempotency(), f"t1:{digest}", record)
    done, running, reused = await runtime.offers.purchase_batch("t1", "o1", [
        HoldRequest(purchase_id="pu_3", user_id="u3", quantity=1, idem_digest="d2", fingerprint="f2"),
        HoldRequest(purchase_id="pu_4", user_id="u4", quantity=1, idem_digest="d3", fingerprint="f3"),
        HoldRequest(purchase_id="pu_5", user_id="u5", quantity=1, idem_digest="d2", fingerprint="zz"),
    ], [], **_LIMITS)
    assert (done.replay, done.status, done.body) == (1, 201, '{"purchase_id":"pu_old"}')
    assert running.err == "IDEMPOTENCY_KEY_IN_USE"
    assert reused.err == "IDEMPOTENCY_KEY_REUSED"
    assert (await runtime.offers.read("t1", "o1")).reserved == 1  # none of them held


async def test_expiring_holds_never_push_the_log_past_its_bound(runtime: Runtime) -> None:
    """Each expired hold's release appends an event: lazy expiry releases only as many as
    the log has room for (the fault lab saw a backlog of bound + 1 while PostgreSQL was
    down); the rest are released once the persister makes room."""
    await runtime.tenants.create("t3", name="t3", status="active", trial_end_ms=None)
    await runtime.offers.create("t3", offer_id="o3", event_id="e", name="O", price_minor=100,
                                currency="usd", total=100, max_per_order=3, expires_at_ms=None,
                                active=True)
    short = {**_LIMITS, "hold_ttl_ms": 50}
    requests = [HoldRequest(purchase_id=f"pu_x{i}", user_id=f"x{i}", quantity=1, idem_digest=f"xd{i}",
                            fingerprint=f"xf{i}") for i in range(5)]
    assert all(r.ok == 1 for r in await runtime.offers.purchase_batch("t3", "o3", requests, [], **short))
    await asyncio.sleep(0.1)  # all five holds are due
    log = runtime.keys.tenant("t3").log
    ctx = runtime.offers._ctx
    bound = await runtime.redis.xlen(log) + 2  # room for two of the five releases
    near = Offers(dataclasses.replace(ctx, settings=msgspec.structs.replace(ctx.settings, max_backlog=bound)))
    state = await near.read("t3", "o3")
    assert await runtime.redis.xlen(log) == bound  # never past it
    assert state.reserved == 3  # two released, three wait for room
    # a purchase at the bound expires nothing and is refused; with room, the rest go
    extra = HoldRequest(purchase_id="pu_y", user_id="y", quantity=1, idem_digest="yd", fingerprint="yf")
    [refused] = await near.purchase_batch("t3", "o3", [extra], [], **short)
    assert refused.err == "PERSISTENCE_LAGGING" and await runtime.redis.xlen(log) == bound
    assert (await runtime.offers.read("t3", "o3")).reserved == 0


@pytest.mark.parametrize("step", ["confirm", "release"])
async def test_a_step_appending_two_events_needs_room_for_both(runtime: Runtime, step: str) -> None:
    """A payment confirmation (or a release by a webhook) appends the purchase's event and
    the webhook's: checked for one, a log at bound - 1 went to bound + 1 (the fault lab's
    1501/1500 while PostgreSQL was down). At bound - 1 it is refused with nothing written;
    at bound - 2 it goes through and the log ends at its bound."""
    tenant = f"t2{step}"
    await _offer(runtime, tenant)
    hold = HoldRequest(purchase_id=f"pu_{step}", user_id="u", quantity=1, idem_digest="d",
                       fingerprint="f")
    [held] = await runtime.offers.purchase_batch(tenant, "o", [hold], [], **_LIMITS)
    assert held.ok == 1
    log = runtime.keys.tenant(tenant).log
    ctx = runtime.offers._ctx

    def bounded(room: int) -> Offers:
        return Offers(dataclasses.replace(ctx, settings=msgspec.structs.replace(
            ctx.settings, max_backlog=room)))

    async def take(offers: Offers) -> object:
        if step == "confirm":
            return await offers.confirm(tenant, "o", hold.purchase_id, event_id="evt_1",
                                        session_id="cs_1", payment_intent="pi_1")
        return await offers.release(tenant, "o", hold.purchase_id, status="canceled",
                                    event_id="evt_1", event_type="checkout.session.expired")

    before = await runtime.redis.xlen(log)
    with pytest.raises(PersistenceLagging):
        await take(bounded(before + 1))
    assert await runtime.redis.xlen(log) == before  # nothing written
    assert (await runtime.offers.read(tenant, "o")).reserved == 1
    await take(bounded(before + 2))
    assert await runtime.redis.xlen(log) == before + 2  # at its bound, never past it


async def _offer(runtime: Runtime, tenant: str, **extra: object) -> None:
    await runtime.tenants.create(tenant, name=tenant, status="active", trial_end_ms=None)
    await runtime.offers.create(tenant, offer_id="o", event_id="e", name="O", price_minor=100,
                                currency="usd", total=100, max_per_order=3, expires_at_ms=None,
                                active=True, **extra)


async def test_requests_of_one_call_decide_as_if_each_ran_alone(runtime: Runtime) -> None:
    """The script buffers its writes (one HSET / ZADD per key and call): a request must
    still see every earlier request's writes of the same call, so the answers of one
    call are those of the same requests sent one call each, and everything is stored."""
    limits = {**_LIMITS, "rate_interval_ms": 3_600_000.0, "rate_burst": 1}  # 2 per user, then refused
    specs = [("u1", "d1", "f1"), ("u1", "d2", "f2"), ("u1", "d3", "f3"),  # the 3rd: RATE_LIMITED
             ("u2", "d4", "f4"), ("u3", "d4", "f4"),  # the same key again: IDEMPOTENCY_KEY_IN_USE
             ("u4", "d4", "zz"),  # another request's key: IDEMPOTENCY_KEY_REUSED
             ("u5", "", ""), ("u5", "", ""), ("u5", "", ""),  # no key: the rate limit alone
             ("u6", "d3", "f3")]  # the rate-limited request's key was never marked: held

    def requests(tag: str) -> list[HoldRequest]:
        return [HoldRequest(purchase_id=f"pu_{tag}{i}", user_id=u, quantity=1, idem_digest=d, fingerprint=f)
                for i, (u, d, f) in enumerate(specs)]

    def decided(results: list[HoldResult]) -> list[tuple[int, str, int, int]]:
        return [(r.ok, r.err, r.replay, r.idem) for r in results]

    await _offer(runtime, "ta")
    await _offer(runtime, "tb")
    together = await runtime.offers.purchase_batch("ta", "o", requests("a"), [], **limits)
    alone = [(await runtime.offers.purchase_batch("tb", "o", [r], [], **limits))[0] for r in requests("b")]
    assert decided(together) == decided(alone)
    assert decided(together) == [
        (1, "", 0, 1), (1, "", 0, 1), (0, "RATE_LIMITED", 0, 0), (1, "", 0, 1),
        (0, "IDEMPOTENCY_KEY_IN_USE", 0, 0), (0, "IDEMPOTENCY_KEY_REUSED", 0, 0),
        (1, "", 0, 0), (1, "", 0, 0), (0, "RATE_LIMITED", 0, 0), (1, "", 0, 1)]

    held = [f"pu_a{i}" for i, r in enumerate(together) if r.ok]
    tk = runtime.keys.tenant("ta")
    assert (await runtime.offers.read("ta", "o")).reserved == len(held) == 6
    expiries = []
    for pid in held:  # the record and the offer's holds
        assert (await runtime.offers.purchase("ta", pid)).status == "pending"
        expiries.append(await runtime.redis.zscore(tk.offer_holds("o"), pid))
    # the partition's expiry queue names the offer once, at its earliest hold
    assert await runtime.redis.zrange(tk.offer_hold_expiry(), 0, -1, withscores=True) == [(b"ta:o", min(expiries))]
    # the call's records, filed at one expiry: one member of the expiry zset names them all
    [member] = await runtime.redis.zrange(tk.offer_idempotency_expiry(), 0, -1)
    assert sorted(member.decode().split("\n")) == ["ta:d1", "ta:d2", "ta:d3", "ta:d4"]
    # the buffered rate-limit values were written: u1 and u5 are still refused
    later = await runtime.offers.purchase_batch("ta", "o", [
        HoldRequest(purchase_id="pu_a20", user_id="u1", quantity=1, idem_digest="", fingerprint=""),
        HoldRequest(purchase_id="pu_a21", user_id="u5", quantity=1, idem_digest="", fingerprint="")],
        [], **limits)
    assert [r.err for r in later] == ["RATE_LIMITED", "RATE_LIMITED"]

    # a response stored by a call is what a repeat in the same call replays, and the
    # record gets its session; a second store of the same key does nothing
    finish = FinishItem(purchase_id="pu_a0", session_id="cs_a0", checkout_url="https://pay/cs_a0",
                        idem_digest="d1", status=201, body=b'{"purchase_id":"pu_a0"}')
    again = FinishItem(purchase_id="pu_a0", session_id="cs_a0", checkout_url="https://pay/cs_a0",
                       idem_digest="d1", status=500, body=b"{}")
    repeat = HoldRequest(purchase_id="pu_a30", user_id="u9", quantity=1, idem_digest="d1", fingerprint="f1")
    [replay] = await runtime.offers.purchase_batch("ta", "o", [repeat], [finish, again], **limits)
    assert (replay.replay, replay.status, replay.body) == (1, 201, '{"purchase_id":"pu_a0"}')
    record = await runtime.offers.purchase("ta", "pu_a0")
    assert (record.session_id, record.checkout_url) == ("cs_a0", "https://pay/cs_a0")


async def test_per_user_cap_within_one_call_as_if_each_ran_alone(runtime: Runtime) -> None:
    """The users' units (held or owned) are read once per call and written once: a user's
    later requests of the same call count the earlier ones' units."""
    specs = [("u1", 1), ("u1", 1), ("u1", 1), ("u2", 2), ("u2", 1), ("u3", 3), ("u1", 1)]

    def requests(tag: str) -> list[HoldRequest]:
        return [HoldRequest(purchase_id=f"pu_{tag}{i}", user_id=u, quantity=q, idem_digest="", fingerprint="")
                for i, (u, q) in enumerate(specs)]

    await _offer(runtime, "tc", max_per_user=2)
    await _offer(runtime, "td", max_per_user=2)
    together = await runtime.offers.purchase_batch("tc", "o", requests("c"), [], **_LIMITS)
    alone = [(await runtime.offers.purchase_batch("td", "o", [r], [], **_LIMITS))[0] for r in requests("d")]
    assert [(r.ok, r.err) for r in together] == [(r.ok, r.err) for r in alone] == [
        (1, ""), (1, ""), (0, "USER_LIMIT"), (1, ""), (0, "USER_LIMIT"), (0, "USER_LIMIT"), (0, "USER_LIMIT")]
    assert together[2].details == {"user_id": "u1", "max_per_user": 2, "requested": 1, "held_or_owned": 2}
    users = await runtime.redis.hgetall(runtime.keys.tenant("tc").offer_users("o"))
    assert {k.decode(): int(v) for k, v in users.items()} == {"u1": 2, "u2": 2}
    assert (await runtime.offers.read("tc", "o")).reserved == 4


async def test_a_201_is_the_purchase_records_not_stored(runtime: Runtime) -> None:
    """A held purchase's session is attached with no write under its key: the record
    stays running with the purchase id, and from then on a repeat is answered with the
    record's fields (the 201 is a function of them). Before the session lands a repeat
    is in use; another body under the key is refused; an old stored 201 still replays."""
    await runtime.tenants.create("t3", name="t3", status="active", trial_end_ms=None)
    await runtime.offers.create("t3", offer_id="o3", event_id="e", name="O", price_minor=100,
                                currency="usd", total=10, max_per_order=3, expires_at_ms=None,
                                active=True)
    idem = runtime.keys.tenant("t3").offer_idempotency()
    first = HoldRequest(purchase_id="pu_s1", user_id="u1", quantity=2, idem_digest="s1", fingerprint="fs1")
    [held] = await runtime.offers.purchase_batch("t3", "o3", [first], [], **_LIMITS)
    assert held.ok == 1 and held.idem == 1
    repeat = HoldRequest(purchase_id="pu_s2", user_id="u1", quantity=2, idem_digest="s1", fingerprint="fs1")
    [early] = await runtime.offers.purchase_batch("t3", "o3", [repeat], [], **_LIMITS)
    assert early.err == "IDEMPOTENCY_KEY_IN_USE"

    session = FinishItem(purchase_id="pu_s1", session_id="cs_s1", checkout_url="https://pay/cs_s1")
    other = HoldRequest(purchase_id="pu_s3", user_id="u1", quantity=1, idem_digest="s1", fingerprint="fs9")
    replay, refused = await runtime.offers.purchase_batch("t3", "o3", [repeat, other], [session], **_LIMITS)
    assert (replay.replay, replay.status, replay.body) == (1, 201, "")
    assert (replay.purchase_id, replay.session_id, replay.checkout_url, replay.expires_ms) == (
        "pu_s1", "cs_s1", "https://pay/cs_s1", held.expires_ms)
    assert refused.err == "IDEMPOTENCY_KEY_REUSED"
    record = (await runtime.redis.hget(idem, "t3:s1")).decode()
    assert record.startswith("R ") and record.endswith(" fs1 pu_s1"), record  # no body under the key
    state = await runtime.offers.read("t3", "o3")
    assert state.reserved == 2  # one hold: the repeats took nothing

    # restored from PostgreSQL (reconcile --repair), which keeps the session of a settled
    # purchase but not its URL: no longer an answer by itself; once the key is stale the
    # answer is recovered from the provider, whose URL the record then keeps
    tk = runtime.keys.tenant("t3")
    purchases = tk.purchases()
    restored = msgspec.json.decode(await runtime.redis.hget(purchases, "pu_s1"))
    assert "session_id" not in restored  # pending: its session is kept apart
    restored.update(status="paid", session_id="cs_s1")
    await runtime.redis.hset(purchases, "pu_s1", msgspec.json.encode(restored))
    await runtime.redis.zrem(tk.offer_holds("o3"), "pu_s1")
    await runtime.redis.hdel(tk.purchase_sessions(), "pu_s1")
    [young] = await runtime.offers.purchase_batch("t3", "o3", [repeat], [], **_LIMITS)
    assert young.err == "IDEMPOTENCY_KEY_IN_USE"
    [lost] = await runtime.offers.purchase_batch("t3", "o3", [repeat], [], **{**_LIMITS, "idem_stale_ms": 0})
    assert (lost.recover, lost.purchase_id, lost.expires_ms) == (1, "pu_s1", held.expires_ms)
    [again_201] = await runtime.offers.purchase_batch("t3", "o3", [repeat], [session], **_LIMITS)
    assert (again_201.replay, again_201.session_id, again_201.checkout_url) == (1, "cs_s1", "https://pay/cs_s1")
    record = await runtime.offers.purchase("t3", "pu_s1")
    assert (record.status, record.version, record.checkout_url) == ("paid", restored["version"], "https://pay/cs_s1")

    # a 201 stored under its key by a process from before (its finish carried the body)
    old = HoldRequest(purchase_id="pu_s4", user_id="u4", quantity=1, idem_digest="s4", fingerprint="fs4")
    await runtime.offers.purchase_batch("t3", "o3", [old], [], **_LIMITS)
    stored = FinishItem(purchase_id="pu_s4", session_id="cs_s4", checkout_url="https://pay/cs_s4",
                        idem_digest="s4", status=201, body=b'{"purchase_id":"pu_s4"}')
    again = HoldRequest(purchase_id="pu_s5", user_id="u4", quantity=1, idem_digest="s4", fingerprint="fs4")
    [replayed] = await runtime.offers.purchase_batch("t3", "o3", [again], [stored], **_LIMITS)
    assert (replayed.replay, replayed.status, replayed.body, replayed.session_id) == (
        1, 201, '{"purchase_id":"pu_s4"}', "")


async def test_an_order_past_the_largest_amount_is_refused_whole(runtime: Runtime) -> None:
    """An offer made before ``POST /v1/offers`` held price x max_per_order to ``MAX_MINOR``
    (the engine itself takes one) never sells an order whose amount passes it: that amount
    would not stay exact through the script's numbers. Up to it, the amount is exact."""
    await runtime.tenants.create("tm", name="tm", status="active", trial_end_ms=None)
    for offer_id, price in (("over", MAX_MINOR // 2 + 1), ("at", MAX_MINOR // 2)):
        await runtime.offers.create("tm", offer_id=offer_id, event_id="e", name="O", price_minor=price,
                                    currency="usd", total=10, max_per_order=3, expires_at_ms=None, active=True)
    two, one = (HoldRequest(purchase_id=new_purchase_id(), user_id=f"u{n}", quantity=n) for n in (2, 1))
    refused, held = await runtime.offers.purchase_batch("tm", "over", [two, one], [], **_LIMITS)
    assert refused.err == "QUANTITY_LIMIT" and refused.details == {
        "quantity": 2, "max_per_order": 3, "max_amount_minor": MAX_MINOR}, refused
    assert held.ok == 1
    assert (await runtime.offers.read("tm", "over")).reserved == 1  # the refused order took nothing
    exact = HoldRequest(purchase_id=new_purchase_id(), user_id="u3", quantity=2)
    [at] = await runtime.offers.purchase_batch("tm", "at", [exact], [], **_LIMITS)
    assert at.ok == 1
    assert (await runtime.offers.purchase("tm", exact.purchase_id)).amount_minor == MAX_MINOR
