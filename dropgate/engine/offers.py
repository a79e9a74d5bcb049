"""Offers: inventory where ``available = total - reserved - sold`` never goes negative.

Script <-> method: ``offer_create-3.lua`` <-> ``Offers.create``,
``offer_update-7.lua`` <-> ``Offers.update``, ``offer_read-7.lua`` <-> ``Offers.read``,
``offer_purchase_batch-11.lua`` <-> ``Offers.purchase_batch``,
``offer_release-8.lua`` <-> ``Offers.release``, ``offer_confirm-8.lua`` <-> ``Offers.confirm``,
``offer_refund_done-3.lua`` <-> ``Offers.refund_done``,
``offer_refund_hold-3.lua`` <-> ``Offers.refund_hold``, ``offer_refund-5.lua`` <-> ``Offers.refund``,
``offer_dispute-4.lua`` <-> ``Offers.dispute``,
``offer_expire_holds-7.lua`` <-> ``Offers.expire_holds``,
``offer_housekeep-3.lua`` <-> ``Offers.housekeep``.

The purchase flow around these (rate limits, idempotency, the payment provider,
webhooks) is ``dropgate/checkout`` (above the engine); the expiry sweeper is ``engine/holds.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.engine.keys import TenantKeys
from dropgate.engine.scripts import keep_arg, patch_arg
from dropgate.errors import NotFound
from dropgate.ids import check_id, new_id, new_ordered_id, text, text_map
from dropgate.specs.entities import OFFER
from dropgate.specs.structs import script_pairs, spec_struct


class _OfferCore(msgspec.Struct, kw_only=True):
    """The offer fields the engine reasons about; ``OfferState`` adds the rest of the
    spec (``dropgate/specs: OFFER``), so a new field is not restated here."""

    tenant_id: str
    offer_id: str
    total: int
    reserved: int
    sold: int
    active: bool
    archived: bool
    expires_at_ms: int | None = None
    created_ms: int
    version: int

    @property
    def available(self) -> int:
        return self.total - self.reserved - self.sold

    def listed(self, now_ms: int) -> bool:
        """Shown by the list endpoint: active, unarchived, unexpired."""
        return self.active and not self.archived and (
            self.expires_at_ms is None or self.expires_at_ms > now_ms)


if TYPE_CHECKING:
    OfferState = _OfferCore
else:
    OfferState = spec_struct("OfferState", OFFER.fields, base=_OfferCore, module=__name__)
"""An offer's hash: every field of its spec (read the others with ``msgspec.structs``)."""


class PurchaseRecord(msgspec.Struct, kw_only=True):
    purchase_id: str
    tenant_id: str
    offer_id: str
    user_id: str
    quantity: int
    status: str
    amount_minor: int
    currency: str
    hold_expires_ms: int
    created_ms: int
    updated_ms: int
    version: int
    session_id: str | None = None
    checkout_url: str | None = None
    payment_intent: str | None = None
    refund: str | None = None
    refund_id: str | None = None
    retaken: bool = False
    offer_version: int = 0
    # where the units are: 'held' (pending), 'sold', 'none' (a full refund without
    # restock keeps them sold); the offer's reserved / sold count exactly these
    units: str = "none"
    refunded_minor: int = 0
    refunds: dict[str, int] = {}  # refund id -> amount: each refund applied once

    @property
    def refundable_minor(self) -> int:
        return self.amount_minor - self.refunded_minor


def new_purchase_id() -> str:
    """A purchase's id: in time order (``new_ordered_id``), as every index keyed by it wants."""
    return new_ordered_id("pu_")


class HoldRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One purchase request as the batch script sees it."""

    purchase_id: str
    user_id: str
    quantity: int
    idem_digest: str = ""
    fingerprint: str = ""


class HoldResult(msgspec.Struct, kw_only=True):
    """One entry of the batch script's answer (see the script header)."""

    ok: int = 0
    expires_ms: int = 0
    price_minor: int = 0
    currency: str = ""
    name: str = ""
    replay: int = 0
    status: int = 0
    body: str = ""
    err: str = ""
    details: dict[str, Any] = {}
    idem: int = 0
    recover: int = 0  # the key's first request stopped answering after its hold
    purchase_id: str = ""  # of the hold to recover
    quantity: int = 0
    success_url: str = ""  # the offer's, else the tenant's ('' none: dropgate's own pages)
    cancel_url: str = ""
    session_id: str = ""  # a replayed 201's, rendered again from the purchase record
    checkout_url: str = ""


class FinishItem(msgspec.Struct, frozen=True, kw_only=True):
    """A purchase's checkout session to attach to its record (after its 201 was sent:
    the 201 is a function of the record), or a refusal's response to store under its
    idempotency key (before the client sees it)."""

    purchase_id: str = ""
    session_id: str = ""
    checkout_url: str = ""
    idem_digest: str = ""
    status: int = 0
    body: bytes = b""  # the response body, exactly as sent


class Outcome(msgspec.Struct, kw_only=True):
    outcome: str
    status: str = ""
    quantity: int = 0
    payment_intent: str | None = None


class RefundHold(msgspec.Struct, kw_only=True):
    """An amount set aside for one refund under way (``offer_refund_hold-3.lua``)."""

    amount: int
    payment_intent: str
    currency: str
    status: str


class RefundOutcome(msgspec.Struct, kw_only=True):
    outcome: str
    status: str
    refunded_minor: int = 0


_hold_results = msgspec.json.Decoder(list[HoldResult])
_msgpack = msgspec.msgpack.Encoder()
_record_decoder = msgspec.json.Decoder(PurchaseRecord)


class Offers:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx

    def _keys5(self, tk: TenantKeys, offer_id: str) -> list[str]:
        """log, offer, holds, the partition's hold expiry queue, purchases."""
        return [tk.log, tk.offer(offer_id), tk.offer_holds(offer_id), tk.offer_hold_expiry(),
                tk.purchases()]

    def _keys7(self, tk: TenantKeys, offer_id: str) -> list[str]:
        """``_keys5``, the offer's users (units held or owned per user) and the pending
        purchases' checkout sessions (a hold released takes its session in)."""
        return [*self._keys5(tk, offer_id), tk.offer_users(offer_id), tk.purchase_sessions()]

    async def create(self, tenant_id: str, *, offer_id: str | None, **fields: object) -> OfferState:
        """Create an offer from ``fields``: every field of the spec (``OFFER``) but the
        ids, ``archived`` and the counters (``expires_at_ms`` may be ``None``)."""
        offer_id = offer_id or new_id("of_")
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_create",
            [tk.log, tk.offer(offer_id), tk.offers_by_event(str(fields.get("event_id", "")))],
            [self._ctx.backlog_bound, tenant_id, offer_id, *script_pairs(OFFER, fields)],
            type=OfferState,
        )

    async def update(
        self, tenant_id: str, offer_id: str, *, total: int | None = None,
        active: bool | None = None, archived: bool | None = None,
        expires_at_ms: int | msgspec.UnsetType | None = msgspec.UNSET,
        max_per_user: int | msgspec.UnsetType | None = msgspec.UNSET,
        success_url: str | msgspec.UnsetType | None = msgspec.UNSET,
        cancel_url: str | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> OfferState:
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_update", self._keys7(tk, offer_id),
            [self._ctx.backlog_bound, tenant_id, offer_id, keep_arg(total), keep_arg(active), keep_arg(archived),
             patch_arg(expires_at_ms), patch_arg(max_per_user), patch_arg(success_url), patch_arg(cancel_url)],
            type=OfferState,
        )

    async def read(self, tenant_id: str, offer_id: str) -> OfferState:
        """The offer with exact availability (expired holds released first)."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_read", self._keys7(tk, offer_id), [self._ctx.backlog_bound, tenant_id, offer_id],
            type=OfferState,
        )

    async def list_by_event(self, tenant_id: str, event_id: str) -> list[OfferState]:
        """Every offer of the event, read in one pipelined round trip (no N+1)."""
        tk = self._ctx.keys.tenant(tenant_id)
        ids = sorted(text(v) for v in await self._ctx.redis.smembers(tk.offers_by_event(event_id)))
        if not ids:
            return []
        async with self._ctx.redis.pipeline(transaction=False) as pipe:
            for offer_id in ids:
                pipe.hgetall(tk.offer(offer_id))
            rows = await pipe.execute()
        return [msgspec.convert(text_map(row), OfferState, strict=False)
                for row in rows if row]

    async def purchase_batch(
        self, tenant_id: str, offer_id: str, requests: list[HoldRequest], finishes: list[FinishItem],
        *, hold_ttl_ms: int, rate_interval_ms: float, rate_burst: int, idem_ttl_ms: int,
        idem_stale_ms: int,
    ) -> list[HoldResult]:
        """Store ``finishes`` (earlier requests' sessions and refusals), then hold ``requests``."""
        tk = self._ctx.keys.tenant(tenant_id)
        # flat msgpack arrays (the script header says why)
        batch = _msgpack.encode([value for r in requests for value in (
            r.purchase_id, r.user_id, r.quantity, r.idem_digest, r.fingerprint)])
        done = _msgpack.encode([value for f in finishes for value in (
            f.purchase_id, f.session_id, f.checkout_url, f.idem_digest, f.status, len(f.body))])
        args: list[Any] = [self._ctx.backlog_bound, tenant_id, offer_id, hold_ttl_ms,
                           rate_interval_ms, rate_burst, idem_ttl_ms, idem_stale_ms, batch, done,
                           b"".join(f.body for f in finishes)]
        raw = await self._ctx.scripts.raw(
            "offer_purchase_batch",
            [tk.log, tk.offer(offer_id), tk.offer_holds(offer_id), tk.offer_hold_expiry(),
             tk.tenant(), tk.purchases(), tk.offer_idempotency(), tk.offer_idempotency_expiry(),
             tk.purchase_ratelimit(), tk.offer_users(offer_id), tk.purchase_sessions()],
            args, durable=True,
        )
        return _hold_results.decode(raw)

    async def release(self, tenant_id: str, offer_id: str, purchase_id: str, *, status: str,
                      event_id: str = "", event_type: str = "") -> Outcome:
        tk = self._ctx.keys.tenant(tenant_id)
        event_key = tk.webhook_event(event_id or "none")
        return await self._ctx.scripts.call(
            "offer_release",
            [*self._keys5(tk, offer_id), event_key, tk.offer_users(offer_id), tk.purchase_sessions()],
            [self._ctx.backlog_bound, tenant_id, offer_id, purchase_id, status, event_id, event_type],
            type=Outcome,
        )

    async def confirm(self, tenant_id: str, offer_id: str, purchase_id: str, *, event_id: str,
                      session_id: str, payment_intent: str) -> Outcome:
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_confirm",
            [*self._keys5(tk, offer_id), tk.webhook_event(event_id), tk.offer_users(offer_id),
             tk.purchase_sessions()],
            [self._ctx.backlog_bound, tenant_id, offer_id, purchase_id, event_id, session_id,
             payment_intent],
            type=Outcome, durable=True,
        )

    async def refund_done(self, tenant_id: str, offer_id: str, purchase_id: str, *,
                          refund_id: str) -> None:
        tk = self._ctx.keys.tenant(tenant_id)
        await self._ctx.scripts.call(
            "offer_refund_done", [tk.log, tk.purchases(), tk.offer(offer_id)],
            [self._ctx.backlog_bound, tenant_id, purchase_id, refund_id], durable=True)

    async def refund_hold(self, tenant_id: str, offer_id: str, purchase_id: str, *, hold_id: str,
                          amount_minor: int | None, take: bool, stale_ms: int) -> RefundHold:
        """Set aside ``amount_minor`` (None: all that is left) of the payment for one refund
        before the provider is asked (``take``), or give it back after it refused."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_refund_hold", [tk.log, tk.purchases(), tk.offer(offer_id)],
            [self._ctx.backlog_bound, tenant_id, offer_id, purchase_id, hold_id,
             "" if amount_minor is None else amount_minor, "take" if take else "drop", stale_ms],
            type=RefundHold, durable=True)

    async def refund(self, tenant_id: str, offer_id: str, purchase_id: str, *, refund_id: str,
                     amount_minor: int, restock: bool, hold_id: str = "", event_id: str = "",
                     event_type: str = "") -> RefundOutcome:
        """Apply a refund the provider made (once per refund id)."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_refund",
            [tk.log, tk.purchases(), tk.offer(offer_id), tk.webhook_event(event_id or "none"),
             tk.offer_users(offer_id)],
            [self._ctx.backlog_bound, tenant_id, offer_id, purchase_id, refund_id, amount_minor,
             "1" if restock else "0", hold_id, event_id, event_type],
            type=RefundOutcome, durable=True)

    async def dispute(self, tenant_id: str, offer_id: str, purchase_id: str, *, event_id: str,
                      event_type: str) -> Outcome:
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "offer_dispute",
            [tk.log, tk.purchases(), tk.offer(offer_id), tk.webhook_event(event_id)],
            [self._ctx.backlog_bound, tenant_id, offer_id, purchase_id, event_id, event_type],
            type=Outcome, durable=True)

    async def expire_holds(self, tenant_id: str, offer_id: str, *, limit: int = 1000) -> int:
        tk = self._ctx.keys.tenant(tenant_id)
        result = await self._ctx.scripts.call(
            "offer_expire_holds", self._keys7(tk, offer_id),
            [self._ctx.backlog_bound, tenant_id, offer_id, limit])
        return int(result["released"])

    async def housekeep(self, partition: int, *, limit: int = 1000) -> dict[str, int]:
        keys = self._ctx.keys
        result: dict[str, int] = await self._ctx.scripts.call(
            "offer_housekeep",
            [keys.offer_idempotency(partition), keys.offer_idempotency_expiry(partition),
             keys.purchase_ratelimit(partition)],
            [limit])
        return result

    async def checkout_urls(self, tenant_id: str, offer_id: str) -> tuple[str, str]:
        """(success, cancel) URL of the offer's checkouts: the offer's, else its tenant's
        ('' none), as the purchase script reads them with a hold (for the sandbox's pages)."""
        tk = self._ctx.keys.tenant(tenant_id)
        async with self._ctx.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(tk.offer(offer_id), "success_url", "cancel_url")
            pipe.hmget(tk.tenant(), "success_url", "cancel_url")
            own, tenant = await pipe.execute()
        return (text(own[0] or tenant[0] or b""), text(own[1] or tenant[1] or b""))

    async def purchase(self, tenant_id: str, purchase_id: str) -> PurchaseRecord:
        """The purchase's record, with its checkout session: a pending purchase's is kept
        apart (``lua/lib/dg_purchase_session.lua``), a settled one's is in the record.

        Read in that order, one after the other, and no transaction is needed: a purchase
        settling in between took its session into its record before its entry went. (Not a
        pipeline: on a cluster a pipeline takes a connection of its own, and a crowd's
        webhooks, each reading its purchase, ran the pool out.)"""
        check_id(purchase_id, "purchase_id")
        tk = self._ctx.keys.tenant(tenant_id)
        kept = await self._ctx.redis.hget(tk.purchase_sessions(), purchase_id)
        raw = await self._ctx.redis.hget(tk.purchases(), purchase_id)
        if raw is None:
            raise NotFound("No such purchase.", details={"purchase_id": purchase_id})
        record: PurchaseRecord = _record_decoder.decode(raw)
        if kept is not None and not record.session_id:
            record.session_id, _, record.checkout_url = text(kept).partition("\n")
        return record


