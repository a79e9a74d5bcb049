"""Engine events (``engine/events.py``) as the public webhook events of docs/api.md.

``public_events`` is pure: one log entry gives zero or more ``PublicEvent`` s, each
with an id derived from the entry's position (``evt_<partition>_<stream id>[.n]``),
so the id is the same however often the entry is read again. Amounts become decimal
strings in their currency and times RFC 3339, as everywhere in the API.

``codes.pool_low`` needs the pool's live count, which no event carries: entries that
change a pool's availability yield a ``PoolCheck`` that the dispatcher resolves
through ``PoolWatch`` (read the count and the campaign's ``low_watermark``, fire once
per crossing below it, arm again once the pool is back at or above it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from dropgate.engine.events import (
    CodesReleased,
    CodesReserved,
    CodesUploaded,
    Event,
    EventPayload,
    InviteRedeemed,
    Malformed,
    OfferPurchase,
    PromoRedeemed,
    PromoUseRolledBack,
    TenantSaved,
    WithdrawalCompleted,
    WithdrawalInitiated,
    WithdrawalRejected,
)
from dropgate.ids import ms_to_dt
from dropgate.money import format_amount

_PURCHASE_TYPES = {"paid": "purchase.paid", "released": "purchase.canceled",
                   "canceled": "purchase.canceled", "expired": "purchase.expired",
                   "refunded": "purchase.refunded", "partially_refunded": "purchase.refunded",
                   "disputed": "purchase.disputed"}
_WITHDRAWAL_TYPES = {"pending": "withdrawal.created", "completed": "withdrawal.completed",
                     "rejected": "withdrawal.rejected"}


@dataclass(frozen=True)
class PublicEvent:
    id: str
    type: str
    tenant_id: str
    entity: str  # deliveries of one entity to one endpoint keep their log order
    created_ms: int
    data: dict[str, Any]

    def body(self) -> bytes:
        """The exact bytes POSTed (and signed) on every attempt."""
        created = ms_to_dt(self.created_ms)
        assert created is not None
        return msgspec.json.encode({
            "id": self.id, "type": self.type,
            "created": created.isoformat().replace("+00:00", "Z"),
            "tenant_id": self.tenant_id, "data": self.data})


@dataclass(frozen=True)
class PoolCheck:
    tenant_id: str
    campaign_id: str
    type: str
    entity: str
    event_id: str
    created_ms: int


def _time(ms: int | None) -> str | None:
    dt = ms_to_dt(ms)
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def event_id(event: Event[Any], index: int = 0) -> str:
    return f"evt_{event.partition}_{event.id}" + (f".{index}" if index else "")


def public_type(event: Event[Any]) -> str | None:
    """The public type of one log entry, or None for what tenants are not told.

    Cheap on purpose (isinstance and a status): the dispatcher asks it of every entry,
    and builds the event's data (times and amounts formatted) only for the tenants that
    have an endpoint wanting the type (``public_event``)."""
    payload = event.data
    if isinstance(payload, InviteRedeemed):
        return "invite.redeemed"
    if isinstance(payload, PromoRedeemed):
        return None if payload.resync else "promo.redeemed"
    if isinstance(payload, PromoUseRolledBack):
        return "promo.use_rolled_back"
    if isinstance(payload, OfferPurchase):
        if payload.status == "pending":
            return "purchase.created" if payload.version <= 1 else None
        return _PURCHASE_TYPES.get(payload.status)
    if isinstance(payload, CodesUploaded):
        return "codes.uploaded"
    if isinstance(payload, WithdrawalInitiated | WithdrawalCompleted | WithdrawalRejected):
        return _WITHDRAWAL_TYPES.get(payload.status)
    if isinstance(payload, TenantSaved):
        # the tenant's creation (version 1) is not a change of its subscription
        return None if payload.tenant_id == "" or event.version <= 1 else "tenant.subscription_changed"
    return None


def _data(payload: EventPayload) -> dict[str, Any]:
    """The ``data`` of a payload whose ``public_type`` is not None."""
    if isinstance(payload, InviteRedeemed):
        return {"code": payload.code, "user_id": payload.user_id,
                "used_count": payload.used_count, "used_at": _time(payload.at_ms)}
    if isinstance(payload, PromoRedeemed):
        cur = payload.currency
        return {
            "code": payload.code, "use_id": payload.use_id, "customer_id": payload.customer_id,
            "currency": cur, "base_amount": format_amount(payload.base_amount, cur),
            "bonus_amount": format_amount(payload.bonus_amount, cur),
            "total_amount": format_amount(payload.base_amount + payload.bonus_amount, cur),
            "used_at": _time(payload.at_ms)}
    if isinstance(payload, PromoUseRolledBack):
        return {"code": payload.code, "use_id": payload.use_id, "customer_id": payload.customer_id,
                "rolled_back_at": _time(payload.at_ms)}
    if isinstance(payload, OfferPurchase):
        return {
            "purchase_id": payload.purchase_id, "offer_id": payload.offer_id,
            "user_id": payload.user_id, "quantity": payload.quantity, "status": payload.status,
            "amount": format_amount(payload.amount_minor, payload.currency),
            "currency": payload.currency, "expires_at": _time(payload.hold_expires_ms),
            "created_at": _time(payload.created_ms), "updated_at": _time(payload.updated_ms)}
    if isinstance(payload, CodesUploaded):
        return {"campaign_id": payload.campaign_id, "type": payload.type,
                "count": len(payload.batch()), "uploaded_at": _time(payload.at_ms)}
    if isinstance(payload, WithdrawalInitiated | WithdrawalCompleted | WithdrawalRejected):
        cur = payload.currency
        return {
            "withdrawal_id": payload.withdrawal_id, "status": payload.status,
            "amount": format_amount(payload.amount, cur), "currency": cur,
            "initiated_by": payload.initiated_by, "approved_by": payload.approved_by,
            "created_at": _time(payload.created_ms), "completed_at": _time(payload.completed_ms)}
    if isinstance(payload, TenantSaved):
        return {"subscription_status": payload.status, "trial_end": _time(payload.trial_end_ms)}
    raise TypeError(f"no public data for {type(payload).__name__}")


def tenant_of(event: Event[Any]) -> str:
    return getattr(event.data, "tenant_id", "")


def public_event(event: Event[Any], kind: str) -> PublicEvent:
    """The public event of an entry whose ``public_type`` is ``kind``."""
    return PublicEvent(id=event_id(event), type=kind, tenant_id=tenant_of(event), entity=event.entity,
                       created_ms=event.position[0], data=_data(event.data))


def pool_checks(event: Event[Any]) -> list[PoolCheck]:
    """The pools whose count one log entry may have moved across a low watermark."""
    payload = event.data
    if isinstance(payload, CodesReserved | CodesReleased | CodesUploaded):
        return [PoolCheck(tenant_id=payload.tenant_id, campaign_id=payload.campaign_id,
                          type=payload.type, entity=event.entity,
                          event_id=event_id(event, 1), created_ms=event.position[0])]
    return []


def public_events(event: Event[Any]) -> tuple[list[PublicEvent], list[PoolCheck]]:
    """What tenants are told about one log entry, and the pools whose count may have crossed."""
    if isinstance(event.data, Malformed):
        return [], []
    kind = public_type(event)
    return ([] if kind is None else [public_event(event, kind)]), pool_checks(event)


PoolCounter = Callable[[str, str, str], Awaitable[tuple[int, int | None]]]
"""(tenant, campaign, type) -> (available codes, the campaign's low_watermark or None)."""


class PoolWatch:
    """Turns ``PoolCheck`` s into ``codes.pool_low`` events, once per crossing.

    The armed/fired state per pool is a row of ``dg_webhook_pool_state``: two
    dispatchers (or one replaying after a crash) see the same state, and the update
    that flips it is conditional, so only one of them fires.
    """

    def __init__(self, count: PoolCounter) -> None:
        self._count = count

    async def resolve(self, conn: asyncpg.Connection, checks: list[PoolCheck]) -> list[PublicEvent]:
        fired: list[PublicEvent] = []
        latest: dict[tuple[str, str, str], PoolCheck] = {}
        for check in checks:  # one look per pool and batch is enough: the count is live
            latest[(check.tenant_id, check.campaign_id, check.type)] = check
        for (tenant_id, campaign_id, code_type), check in latest.items():
            available, watermark = await self._count(tenant_id, campaign_id, code_type)
            if watermark is None:
                continue
            low = available < watermark
            flipped = await conn.fetchval(
                """INSERT INTO dg_webhook_pool_state (tenant_id, campaign_id, type, low)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (tenant_id, campaign_id, type) DO UPDATE SET low = EXCLUDED.low
                   WHERE dg_webhook_pool_state.low IS DISTINCT FROM EXCLUDED.low
                   RETURNING low""", tenant_id, campaign_id, code_type, low)
            if flipped:
                fired.append(PublicEvent(
                    id=check.event_id, type="codes.pool_low", tenant_id=tenant_id,
                    entity=check.entity, created_ms=check.created_ms,
                    data={"campaign_id": campaign_id, "type": code_type, "available": available,
                          "low_watermark": watermark}))
        return fired
