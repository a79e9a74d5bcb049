"""The typed event log: every script that appends an event, run on real Redis, and
each entry it appended decoded into its struct; the union has a struct for exactly the
types the scripts write; a malformed entry is dead-lettered with a reason, and the
persister goes on."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import pytest

from dropgate.engine.abandoned import discard_abandoned
from dropgate.engine.actors.lease import ActorLease
from dropgate.engine.events import (
    PAYLOADS,
    ApikeyCreated,
    ApikeyRevoked,
    BookingCanceled,
    BookingCreated,
    CampaignSaved,
    CodesAssigned,
    CodesCommitted,
    CodesDiscarded,
    CodesReleased,
    CodesReserved,
    CodesResynced,
    CodesUploaded,
    Event,
    EventPayload,
    InviteRedeemed,
    InviteSaved,
    Malformed,
    OfferPurchase,
    OfferSaved,
    OfferWebhook,
    OrderCreated,
    OrderUpdated,
    PaymentCreated,
    PromoRedeemed,
    PromoSaved,
    PromoUseRolledBack,
    TenantCheckout,
    TenantSaved,
    WithdrawalCompleted,
    WithdrawalInitiated,
    WithdrawalRejected,
    parse_entry,
    tag_of,
)
from dropgate.engine.ledger import Ledger
from dropgate.engine.offers import FinishItem, HoldRequest
from dropgate.engine.scripts import load_sources
from dropgate.ids import text
from dropgate.persistence.appliers import APPLIERS
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings

P = TypeVar("P", bound=EventPayload)

_EMIT_RE = re.compile(r"dg_emit(?:_json)?\(\s*[^,]+,\s*'([a-z_]+\.[a-z_]+)'")
_ETYPE_RE = re.compile(r"\betype\s*=\s*'([a-z_]+\.[a-z_]+)'")


def _emitting_scripts() -> dict[str, set[str]]:
    """Script name -> the event types its text (includes expanded) can append."""
    out: dict[str, set[str]] = {}
    for name, src in load_sources().items():
        if "'XADD'" in src.text:
            out[name] = set(_EMIT_RE.findall(src.text)) | set(_ETYPE_RE.findall(src.text))
    return out


def test_the_union_has_a_struct_for_exactly_the_types_scripts_emit() -> None:
    emitted = set().union(*_emitting_scripts().values())
    assert emitted == set(PAYLOADS), (
        f"types without a struct: {emitted - set(PAYLOADS)}; structs no script emits: "
        f"{set(PAYLOADS) - emitted}")
    assert set(APPLIERS) == set(PAYLOADS), "every event type has exactly one applier"
    assert all(tag_of(cls) == t for t, cls in PAYLOADS.items())


class _Log:
    """Runs script calls and collects what each appended, decoded, per script name."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.by_script: dict[str, list[Event[Any]]] = {}
        self._tails: dict[int, str] = {}
        self.result: Any = None  # what the last call answered

    async def _new_entries(self) -> list[Event[Any]]:
        keys = self.runtime.keys
        out: list[Event[Any]] = []
        for p in range(keys.partitions):
            entries = await self.runtime.redis.xrange(keys.log(p), min=f"({self._tails.get(p, '0-0')}")
            for eid, fields in entries:
                event = parse_entry(p, eid, fields)
                # every script writes the one layout the persister reads by position, and
                # the fields as the server sends them (a flat list) give the same event
                assert list(fields) == [b"t", b"e", b"v", b"d"], fields
                assert parse_entry(p, eid, [x for pair in fields.items() for x in pair]) == event
                out.append(event)
                self._tails[p] = text(eid)
        return out

    async def run(self, script: str, call: Awaitable[Any], *expect: type[EventPayload]) -> list[Any]:
        """Await ``call`` (which runs ``script``); its entries decode to ``expect``, in order."""
        await self._new_entries()
        result = await call
        events = await self._new_entries()
        for e in events:
            assert not isinstance(e.data, Malformed), (script, e.data.reason)
            assert e.type == tag_of(type(e.data))
        assert [type(e.data) for e in events] == list(expect), script
        self.by_script.setdefault(script, []).extend(events)
        self.result = result
        return [e.data for e in events]

    async def one(self, script: str, call: Awaitable[Any], kind: type[P]) -> P:
        [data] = await self.run(script, call, kind)
        assert isinstance(data, kind)
        return data


async def test_every_script_event_decodes_into_its_struct(runtime: Runtime, persister: Persister) -> None:
    rt, log, bound = runtime, _Log(runtime), runtime.settings.max_backlog
    tk, call = rt.keys.tenant("acme"), rt.scripts.call

    # -- tenants and API keys
    t = await log.one("tenant_create", rt.tenants.create("acme", name="Acme", status="active",
                                                         trial_end_ms=None), TenantSaved)
    assert (t.tenant_id, t.status, t.trial_end_ms) == ("acme", "active", None) and t.created_ms > 0
    t = await log.one("tenant_subscription", rt.tenants.set_subscription(
        "acme", status="trialing", trial_end_ms=4_102_444_800_000), TenantSaved)
    assert (t.status, t.trial_end_ms, t.name) == ("trialing", 4_102_444_800_000, "Acme")
    t = await log.one("resync_tenant", call("resync_tenant", [tk.log, tk.tenant()], [bound, "acme"]),
                      TenantSaved)
    assert t.status == "trialing"
    urls = await log.one("tenant_checkout", rt.tenants.set_checkout(
        "acme", success_url="https://shop.test/ok", cancel_url=None), TenantCheckout)
    assert (urls.tenant_id, urls.success_url, urls.cancel_url) == ("acme", "https://shop.test/ok", None)
    [k] = await log.run("apikey_create", rt.api_keys.create(role="service", tenant_id="acme"),
                        ApikeyCreated)
    key_id = log.result[0]
    assert (k.key_id, k.role, k.tenant_id) == (key_id, "service", "acme") and len(k.secret_sha256) == 64
    p, key = rt.keys.api_key(key_id)
    k = await log.one("resync_apikey", call("resync_apikey", [rt.keys.log(p), key], [bound, key_id]),
                      ApikeyCreated)
    assert k.key_id == key_id
    r = await log.one("apikey_revoke", rt.api_keys.revoke(key_id), ApikeyRevoked)
    assert r.key_id == key_id and r.revoked_ms > 0

    # -- invites
    i = await log.one("invite_create", rt.invites.create("acme", code="INV", max_uses=5,
                                                         expires_at_ms=None, active=True), InviteSaved)
    assert (i.code, i.max_uses, i.active, i.expires_at_ms) == ("INV", 5, True, None)
    i = await log.one("invite_update", rt.invites.update("acme", "INV", max_uses=3,
                                                         expires_at_ms=4_102_444_800_000), InviteSaved)
    assert (i.max_uses, i.expires_at_ms) == (3, 4_102_444_800_000)
    u = await log.one("invite_redeem", rt.invites.redeem("acme", "INV", user_id="u1"), InviteRedeemed)
    assert (u.code, u.user_id, u.used_count) == ("INV", "u1", 1)
    i, u = await log.run("resync_invite", call("resync_invite", [tk.log, tk.invite("INV"),
                                                                tk.invite_users("INV")],
                                               [bound, "acme", "INV", "1", "u1"]),
                         InviteSaved, InviteRedeemed)
    assert i.max_uses == 3 and (u.user_id, u.used_count) == ("u1", 1)

    # -- campaign codes
    up = await log.one("codes_upload", rt.codes.upload_batch("acme", "camp", "tm", ["A1", "A2", "A3"]),
                       CodesUploaded)
    assert (up.campaign_id, up.type, sorted(up.batch())) == ("camp", "tm", ["A1", "A2", "A3"])
    assert up.created_ms == up.at_ms  # the batch created the campaign
    res = await log.one("codes_reserve", rt.codes.reserve("acme", "camp", "tm", 2), CodesReserved)
    reservation = log.result
    assert (res.taken, res.reservations) == (2, 1)
    assert {(r[0], r[1], r[2]) for r in res.rows} == {
        (c, "reserved", reservation.reserve_id) for c in reservation.codes}
    first, second = reservation.codes
    a = await log.one("codes_assign", rt.codes.assign("acme", "camp", [first]), CodesAssigned)
    assert [(r[0], r[1]) for r in a.rows] == [(first, "assigned")] and a.rows[0][5] is not None
    rel = await log.one("codes_release", rt.codes.release("acme", "camp", [second]), CodesReleased)
    assert rel.rows == [(second, "available", None, None, None, None)]
    rs = await log.one("resync_codes", call("resync_codes", [tk.log, tk.codes_meta("camp"),
                                                             tk.codes_records("camp")],
                                            [bound, "acme", "camp", first, second]), CodesResynced)
    assert [(r[0], r[1], r[6]) for r in rs.rows] == [(first, "assigned", "tm"), (second, "available", "tm")]
    cs = await log.one("campaign_save", rt.codes.save_campaign(
        "acme", "camp2", create=True, name="C", types=["tm", "ext"], ttl_s=60, low_watermark=5),
        CampaignSaved)
    assert (cs.types, cs.reservation_ttl_s, cs.low_watermark) == (["ext", "tm"], 60, 5)
    staged = await rt.codes.upload_batch("acme", "camp2", "tm", ["S1", "S2"], upload_id="up1",
                                         final=False, staged=True)
    com = await log.one("codes_commit", rt.codes._commit("acme", "camp2", "tm", "up1", staged.upload),
                        CodesCommitted)
    assert (com.upload, com.type, com.last) == (staged.upload, "tm", True)
    created = await rt.redis.hget(tk.codes_meta("camp2"), "created_ms")
    assert created is not None and com.created_ms == int(created)
    staged = await rt.codes.upload_batch("acme", "camp2", "tm", ["S3"], upload_id="up2",
                                         final=False, staged=True)
    dis = await log.one("codes_discard", rt.codes._discard("acme", "camp2", ["tm"], "up2", staged.upload),
                        CodesDiscarded)
    assert dis.upload == staged.upload
    staged = await rt.codes.upload_batch("acme", "camp2", "tm", ["S4"], upload_id="up3",
                                         final=False, staged=True)
    # its driver died: the staged and seen sets expired, the records and the mark stayed
    await rt.redis.delete(tk.codes_staged("camp2", "up3", "tm"), tk.codes_upload("camp2", "up3"))
    ab = await log.one("codes_abandon", discard_abandoned(rt.redis, rt.scripts, tk, "acme", "camp2"),
                       CodesDiscarded)
    assert ab.upload == staged.upload

    # -- promo codes
    s = await log.one("promo_create", rt.promos.create("acme", code="PR", kind="fixed", value=250,
                                                       currency="usd", per_customer_limit=2), PromoSaved)
    assert (s.kind, s.amount, s.percent, s.max_uses, s.active) == ("fixed", 250, None, None, True)
    s = await log.one("promo_update", rt.promos.update("acme", "PR", max_uses=10), PromoSaved)
    assert s.max_uses == 10
    use = await log.one("promo_redeem", rt.promos.redeem_minor("acme", "PR", customer_id="c1",
                                                               base_minor=1000, currency="usd"),
                        PromoRedeemed)
    assert (use.customer_id, use.base_amount, use.bonus_amount, use.resync) == ("c1", 1000, 250, False)
    back = await log.one("promo_rollback", rt.promos.rollback("acme", "PR", use.use_id),
                         PromoUseRolledBack)
    assert (back.use_id, back.bonus_amount) == (use.use_id, 250)
    again = await rt.promos.redeem_minor("acme", "PR", customer_id="c2", base_minor=500, currency="usd")
    s, use = await log.run("resync_promo", call("resync_promo", [tk.log, tk.promo("PR"), tk.promo_uses("PR")],
                                                [bound, "acme", "PR", "1", again.use_id]),
                           PromoSaved, PromoRedeemed)
    assert (use.use_id, use.base_amount, use.resync) == (again.use_id, 500, True)

    # -- ledger (fenced by a tenant actor's lease epoch)
    epoch = (await ActorLease(rt.ctx).acquire("acme", ttl_ms=60_000)).epoch
    ledger = Ledger(rt.ctx)
    pay = await log.one("ledger_payment", ledger.payment(
        "acme", epoch=epoch, payment_id="pay1", amount=900, currency="usd", reference="r"), PaymentCreated)
    assert (pay.amount, pay.balance, pay.epoch) == (900, 900, epoch)
    w = await log.one("ledger_withdrawal_initiate", ledger.withdrawal_initiate(
        "acme", epoch=epoch, withdrawal_id="w1", amount=300, currency="usd", initiated_by="ann"),
        WithdrawalInitiated)
    assert (w.status, w.approved_by, w.completed_ms) == ("pending", None, None)
    wc = await log.one("ledger_withdrawal_approve", ledger.withdrawal_approve(
        "acme", epoch=epoch, withdrawal_id="w1", approved_by="bob"), WithdrawalCompleted)
    assert (wc.status, wc.approved_by, wc.balance, wc.version) == ("completed", "bob", 600, 2)
    o = await log.one("ledger_order", ledger.order(
        "acme", epoch=epoch, order_id="o1", items_json='[{"sku":"x"}]', total=42, currency="usd"),
        OrderCreated)
    assert (o.items, o.total, o.status) == ('[{"sku":"x"}]', 42, "created")
    b = await log.one("ledger_booking", ledger.booking(
        "acme", epoch=epoch, booking_id="b1", resource_id="room", slot_start_ms=1_000,
        slot_end_ms=2_000, capacity=3, user_id="u1"), BookingCreated)
    assert (b.capacity, b.booked, b.slot_start_ms) == (3, 1, 1_000)
    bc = await log.one("ledger_booking_cancel", ledger.booking_cancel("acme", epoch=epoch, booking_id="b1"),
                       BookingCanceled)
    assert (bc.status, bc.booked, bc.capacity, bc.version, bc.user_id) == ("canceled", 0, 3, 2, "u1")
    ou = await log.one("ledger_order_status", ledger.order_status(
        "acme", epoch=epoch, order_id="o1", status="shipped"), OrderUpdated)
    assert (ou.status, ou.version, ou.items) == ("shipped", 2, '[{"sku":"x"}]') and ou.updated_ms
    await ledger.withdrawal_initiate("acme", epoch=epoch, withdrawal_id="w2", amount=1, currency="usd",
                                     initiated_by="ann")
    await ledger.withdrawal_initiate("acme", epoch=epoch, withdrawal_id="w3", amount=1, currency="usd",
                                     initiated_by="ann", initiator="name:ann", initiator_key_id="k1")
    wr = await log.one("ledger_withdrawal_reject", ledger.withdrawal_reject(
        "acme", epoch=epoch, withdrawal_id="w3", rejected_by="bob", approver="name:bob",
        approver_key_id="k2", reason="no"), WithdrawalRejected)
    assert (wr.status, wr.initiator, wr.approver, wr.reason, wr.version) == (
        "rejected", "name:ann", "name:bob", "no", 2)
    for kind, ident, expect in (("withdrawal", "w1", WithdrawalCompleted),
                                ("withdrawal", "w2", WithdrawalInitiated),
                                ("withdrawal", "w3", WithdrawalRejected), ("order", "o1", OrderCreated)):
        key = tk.withdrawal(ident) if kind == "withdrawal" else tk.order(ident)
        re_emitted = await log.one("resync_ledger", call("resync_ledger", [tk.log, key],
                                                         [bound, kind, "acme", ident]), expect)
        assert re_emitted.version == (1 if ident == "w2" else 2)

    # -- offers and purchases
    offers = rt.offers
    of = await log.one("offer_create", offers.create(
        "acme", offer_id="of", event_id="ev", name="Tee", price_minor=1500, currency="usd", total=2,
        max_per_order=2, expires_at_ms=None, active=True), OfferSaved)
    assert (of.price_minor, of.total, of.active, of.archived) == (1500, 2, True, False)
    of = await log.one("offer_update", offers.update("acme", "of", total=3), OfferSaved)
    assert of.total == 3

    def hold(pid: str, ttl_ms: int) -> Awaitable[Any]:
        return offers.purchase_batch(
            "acme", "of", [HoldRequest(purchase_id=pid, user_id=f"u-{pid}", quantity=1)], [],
            hold_ttl_ms=ttl_ms, rate_interval_ms=1.0, rate_burst=100, idem_ttl_ms=60_000,
            idem_stale_ms=60_000)

    h = await log.one("offer_purchase_batch", hold("pa", 60_000), OfferPurchase)
    assert (h.purchase_id, h.status, h.quantity, h.amount_minor, h.version) == ("pa", "pending", 1, 1500, 1)
    assert h.offer_version == 3 and h.session_id is None
    await offers.purchase_batch("acme", "of", [], [FinishItem(purchase_id="pa", session_id="cs_a",
                                                              checkout_url="https://pay/a")],
                                hold_ttl_ms=1, rate_interval_ms=1.0, rate_burst=100,
                                idem_ttl_ms=60_000, idem_stale_ms=60_000)
    paid, hook = await log.run("offer_confirm", offers.confirm(
        "acme", "of", "pa", event_id="evt_1", session_id="cs_a", payment_intent="pi_a"),
        OfferPurchase, OfferWebhook)
    assert (paid.status, paid.session_id, paid.checkout_url, paid.payment_intent) == (
        "paid", "cs_a", "https://pay/a", "pi_a")
    assert (hook.event_id, hook.outcome, hook.purchase_id) == ("evt_1", "confirmed", "pa")
    await log.run("offer_purchase_batch", hold("pb", 60_000), OfferPurchase)
    gone, hook = await log.run("offer_release", offers.release(
        "acme", "of", "pb", status="released", event_id="evt_2", event_type="checkout.session.expired"),
        OfferPurchase, OfferWebhook)
    assert (gone.status, hook.type, hook.outcome) == ("released", "checkout.session.expired", "released")
    await log.run("offer_purchase_batch", hold("pc", 1), OfferPurchase)
    await asyncio.sleep(0.01)
    expired = await log.one("offer_read", offers.read("acme", "of"), OfferPurchase)
    assert (expired.purchase_id, expired.status) == ("pc", "expired")
    await log.run("offer_purchase_batch", hold("pd", 300), OfferPurchase)
    await log.run("offer_purchase_batch", hold("pe", 300), OfferPurchase)
    await asyncio.sleep(0.35)
    expired = await log.one("offer_expire_holds", offers.expire_holds("acme", "of", limit=1),
                            OfferPurchase)
    assert (expired.purchase_id, expired.status) == ("pd", "expired")
    # pe's hold expires inside the update; pa sold the only unit left: pd cannot be retaken
    expired, of = await log.run("offer_update", offers.update("acme", "of", total=1),
                                OfferPurchase, OfferSaved)
    assert (expired.purchase_id, expired.status, of.total) == ("pe", "expired", 1)
    refund, hook = await log.run("offer_confirm", offers.confirm(
        "acme", "of", "pd", event_id="evt_3", session_id="cs_d", payment_intent="pi_d"),
        OfferPurchase, OfferWebhook)
    assert (refund.status, refund.refund, refund.retaken, hook.outcome) == ("refunded", "pending", False, "refund")
    done = await log.one("offer_refund_done", offers.refund_done("acme", "of", "pd", refund_id="re_d"),
                         OfferPurchase)
    assert (done.refund, done.refund_id, done.refunded_minor, done.refunds) == ("done", "re_d", 1500,
                                                                              {"re_d": 1500})
    # pa: disputed (units stay sold), then a dashboard refund of part of it, by webhook
    disputed, hook = await log.run("offer_dispute", offers.dispute(
        "acme", "of", "pa", event_id="evt_4", event_type="charge.dispute.created"),
        OfferPurchase, OfferWebhook)
    assert (disputed.status, disputed.units, hook.outcome) == ("disputed", "sold", "disputed")
    part, hook = await log.run("offer_refund", offers.refund(
        "acme", "of", "pa", refund_id="re_a", amount_minor=500, restock=True, event_id="evt_5",
        event_type="charge.refunded"), OfferPurchase, OfferWebhook)
    assert (part.status, part.refunded_minor, part.refunds, hook.outcome) == (
        "disputed", 500, {"re_a": 500}, "partially_refunded")
    of, buy = await log.run("resync_offer", call("resync_offer", [tk.log, tk.offer("of"), tk.purchases()],
                                                 [bound, "acme", "of", "1", "pa"]),
                            OfferSaved, OfferPurchase)
    assert of.total == 1 and (buy.purchase_id, buy.status) == ("pa", "disputed")

    # every script that can append was run, each appending every type it can
    assert {name: {e.type for e in events} for name, events in log.by_script.items()} == (
        _emitting_scripts())
    seen = {e.type for events in log.by_script.values() for e in events}
    assert seen == set(PAYLOADS)
    # and the appliers take each of them (the typed structs, applied for real)
    await persister.drain()
    assert persister.stats.dead_letters == 0 and persister.stats.retries == 0, persister.stats.last_error


async def test_malformed_entries_are_dead_lettered_with_a_reason(
    runtime: Runtime, make_settings: Any
) -> None:
    await runtime.tenants.create("t1", name="t1", status="active", trial_end_ms=None)
    await runtime.invites.create("t1", code="C", max_uses=0, expires_at_ms=None, active=True)
    tk = runtime.keys.tenant("t1")
    good = {"tenant_id": "t1", "code": "C", "user_id": "ok", "used_count": 1, "at_ms": 1}

    async def append(etype: str, data: bytes, version: str = "2") -> None:
        await runtime.redis.xadd(tk.log, {"t": etype, "e": "invite:t1:C", "v": version, "d": data})

    await append("invite.redeemed", msgspec.json.encode({k: v for k, v in good.items() if k != "user_id"}))
    await append("invite.redeemed", msgspec.json.encode({**good, "at_ms": "soon"}))
    await append("invite.vanished", msgspec.json.encode(good))
    await append("invite.redeemed", b'{"tenant_id": "t1", ')
    await append("invite.redeemed", msgspec.json.encode(good), version="two")
    await append("invite.redeemed", msgspec.json.encode({**good, "user_id": "after"}), version="3")
    settings: Settings = make_settings(persister_max_retries=2, persister_retry_base_ms=1)
    persister = Persister(redis=runtime.redis, pool=runtime.pool, keys=runtime.keys,
                          scripts=runtime.scripts, settings=settings, name="p")
    await persister.drain(timeout_s=30)
    assert persister.stats.dead_letters == 5
    # in log order: as text a stream id "T-10" sorts before "T-9" (two entries of one ms)
    rows = await runtime.pool.fetch(
        "SELECT event_type, payload, error, attempts FROM dg_dead_letters"
        " ORDER BY split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint")
    errors = [r["error"] for r in rows]
    assert all(e.startswith("MalformedEvent(") for e in errors), errors
    assert "'invite.redeemed'" in errors[0] and "missing required field `user_id`" in errors[0]
    assert "Expected `int`, got `str` - at `$.at_ms`" in errors[1]
    assert "unknown event type 'invite.vanished'" in errors[2]
    assert "bad JSON: Input data was truncated" in errors[3]
    assert "version b'two' is not an integer" in errors[4]
    assert rows[3]["payload"] == '{"tenant_id": "t1", ' and all(r["attempts"] == 2 for r in rows)
    assert [r["event_type"] for r in rows][2] == "invite.vanished"
    dead = await runtime.redis.xrange(runtime.keys.dead_letters(tk.partition))
    assert len(dead) == 5 and dead[3][1][b"d"] == b'{"tenant_id": "t1", '
    # the partition went on: the good entry after them applied
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM invite_code_uses WHERE tenant_id = 't1' AND user_id = 'after'") == 1


@pytest.mark.parametrize("fields", [{}, {"t": "invite.saved"}, {"t": "x", "e": "y", "v": "1"}])
def test_parse_entry_never_raises(fields: dict[str, str]) -> None:
    event = parse_entry(0, b"1-1", fields)
    assert isinstance(event.data, Malformed) and event.position == (1, 1)


def test_parse_entry_reads_a_flat_list_in_any_order() -> None:
    """The fields as the server sent them: the scripts' layout by position, any other (a
    hand-written entry, a field added later) by name, with the same event either way."""
    payload = b'{"tenant_id":"t1","code":"c1","user_id":"u1","at_ms":5,"used_count":1}'
    named = {b"t": b"invite.redeemed", b"e": b"invite:t1:c1", b"v": b"3", b"d": payload}
    expected = parse_entry(2, b"7-1", named)
    assert isinstance(expected.data, InviteRedeemed) and expected.version == 3
    as_written = [b"t", b"invite.redeemed", b"e", b"invite:t1:c1", b"v", b"3", b"d", payload]
    reordered = [b"d", payload, b"v", b"3", b"t", b"invite.redeemed", b"e", b"invite:t1:c1"]
    extra = [*as_written, b"x", b"1"]
    for fields in (as_written, reordered, extra, tuple(as_written)):
        assert parse_entry(2, b"7-1", fields) == expected
    bad = parse_entry(2, b"7-1", [b"t", b"invite.redeemed", b"e", b"invite:t1:c1", b"v", b"x", b"d", payload])
    assert isinstance(bad.data, Malformed) and "version b'x' is not an integer" in bad.data.reason
    assert isinstance(parse_entry(2, b"7-1", [b"t", b"invite.redeemed"]).data, Malformed)
