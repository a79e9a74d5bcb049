"""The event log's entries as Python sees them: one typed struct per event type.

Each state-changing script appends ``t`` (type), ``e`` (entity), ``v`` (the
entity's version after the change) and ``d`` (payload) to its partition's stream.
The payload is JSON, not msgpack: Redis' Lua has ``cjson`` built in, entries stay
readable with ``XRANGE`` in ``redis-cli`` while debugging a drop, and msgspec
decodes JSON about as fast as msgpack. Stream ids (``<ms>-<seq>``) give the
partition's total order; the persister's committed offset is such an id.

Why typed: the scripts build payloads in Lua and the appliers read them in Python,
so a renamed or mistyped key used to surface as a ``KeyError`` deep inside an
applier. Here every event type is a ``msgspec.Struct`` of the tagged union
``Payload`` (its tag is the ``t`` the scripts write), and ``parse_entry`` decodes
``d`` into the struct of its ``t``: an entry that does not fit (unknown type,
missing or mistyped field, bad JSON) becomes an ``Event`` whose ``data`` is
``Malformed``, carrying msgspec's message (which names the field) and the type.
``tests/engine/test_events.py`` runs every script that appends an event and decodes it.

Decoding is lax (``strict=False``): a number sent as a string (``"12"``) or as an
integral float (cjson writes ``1e+15``) still decodes to ``int``, as the appliers'
``int(...)`` calls accepted before the log was typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

import msgspec

from dropgate.engine.ledger import BookingState, OrderState, WithdrawalState
from dropgate.engine.offers import PurchaseRecord
from dropgate.specs import Entity
from dropgate.specs.entities import INVITE, OFFER, PROMO
from dropgate.specs.structs import spec_struct


def parse_stream_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class EventPayload(msgspec.Struct, kw_only=True, gc=False, tag_field="t"):
    """The base of every event's payload; a subclass's ``tag`` is its event type."""


# -- definitions: <kind>.saved carries the saved fields of the entity's spec ------------
def _saved(entity: Entity) -> Any:
    return spec_struct(f"{entity.kind.title()}Saved", entity.saved(), base=EventPayload, module=__name__,
                       tag=f"{entity.kind}.saved")


if TYPE_CHECKING:  # mypy sees the ids; every other field comes from the spec (dropgate/specs)
    class _ByCode(EventPayload):
        tenant_id: str
        code: str

    class _ByOffer(EventPayload):
        tenant_id: str
        offer_id: str

    InviteSaved = PromoSaved = _ByCode
    OfferSaved = _ByOffer
else:
    InviteSaved, PromoSaved, OfferSaved = _saved(INVITE), _saved(PROMO), _saved(OFFER)


# -- tenants and API keys ------------------------------------------------------------
class TenantSaved(EventPayload, tag="tenant.saved"):
    tenant_id: str
    name: str
    status: str
    created_ms: int
    trial_end_ms: int | None = None
    # a creation or subscription change (not a resync): kept in subscription_history
    changed_ms: int | None = None
    changed_by: str = ""  # the key's id; '' the bootstrap key or the CLI


class TenantCheckout(EventPayload, tag="tenant.checkout"):
    """A tenant's checkout redirect URLs (null: none); the event's version is their own."""

    tenant_id: str
    success_url: str | None = None
    cancel_url: str | None = None


class ApikeyCreated(EventPayload, tag="apikey.created"):
    key_id: str
    secret_sha256: str
    role: str
    tenant_id: str  # '' for an admin key
    created_ms: int
    name: str = ""  # '' none (keys made before names)
    scopes: str = "*"  # space-separated; '*' every scope
    created_by: str = ""  # the minting key's id; '' the bootstrap key or the CLI


class ApikeyRevoked(EventPayload, tag="apikey.revoked"):
    key_id: str
    revoked_ms: int


# -- invites ---------------------------------------------------------------------------
class InviteRedeemed(EventPayload, tag="invite.redeemed"):
    tenant_id: str
    code: str
    user_id: str
    used_count: int
    at_ms: int


# -- campaign codes --------------------------------------------------------------------
CodeStatus = Literal["available", "reserved", "assigned"]
# [code, status, reserve_id, reserved_at_ms, expires_at_ms, assigned_at_ms] (dg_code_row)
CodeRow = tuple[str, CodeStatus, str | None, int | None, int | None, int | None]
# the same, plus the code's type (resync_codes)
ResyncedCodeRow = tuple[str, CodeStatus, str | None, int | None, int | None, int | None, str]


class CodesUploaded(EventPayload, tag="codes.uploaded"):
    tenant_id: str
    campaign_id: str
    type: str
    at_ms: int
    codes_text: str | None = None  # the new codes, newline-joined
    codes: list[str] | None = None  # the form before codes_text: a JSON array
    staged: int | None = None  # the upload number whose staging the codes join (not live yet)
    created_ms: int | None = None  # the campaign's creation (its meta's created_ms)

    def batch(self) -> list[str]:
        if self.codes_text:
            return self.codes_text.split("\n")
        return self.codes or []


class _CodesChanged(EventPayload):
    """Each changed code's full resulting state (events carry state, not deltas)."""

    tenant_id: str
    campaign_id: str
    type: str
    rows: list[CodeRow]


class CodesReserved(_CodesChanged, tag="codes.reserved"):
    taken: int
    reservations: int
    available: int | None = None  # the type's available set after the call (low watermark)


class CodesAssigned(_CodesChanged, tag="codes.assigned"):
    assigned_to: str | None = None  # the user every code of the call went to


class CampaignSaved(EventPayload, tag="campaign.saved"):
    """A campaign's definition (create or PATCH); its types only ever grow."""

    tenant_id: str
    campaign_id: str
    name: str
    types: list[str]
    created_ms: int
    reservation_ttl_s: int | None = None
    low_watermark: int | None = None


class CodesCommitted(EventPayload, tag="codes.committed"):
    """A staged upload's codes of one type went live."""

    tenant_id: str
    campaign_id: str
    upload: int
    type: str
    at_ms: int
    last: bool = True  # the upload's last type: it is no longer pending
    created_ms: int | None = None  # the campaign's creation (its meta's created_ms)


class CodesDiscarded(EventPayload, tag="codes.discarded"):
    """A staged upload was refused: its staged rows are dropped (not those of a type it
    already committed: PostgreSQL knows them from the ``codes.committed`` events)."""

    tenant_id: str
    campaign_id: str
    upload: int


class CodesReleased(_CodesChanged, tag="codes.released"):
    pass


class CodesResynced(EventPayload, tag="codes.resynced"):
    tenant_id: str
    campaign_id: str
    rows: list[ResyncedCodeRow]
    at_ms: int


# -- promo codes -----------------------------------------------------------------------
class PromoRedeemed(EventPayload, tag="promo.redeemed"):
    tenant_id: str
    code: str
    use_id: str
    customer_id: str
    currency: str
    base_amount: int
    bonus_amount: int
    at_ms: int
    resync: bool = False  # re-emitted by reconcile --repair at the code's current version


class PromoUseRolledBack(EventPayload, tag="promo.use_rolled_back"):
    tenant_id: str
    code: str
    use_id: str
    customer_id: str
    bonus_amount: int
    at_ms: int


# -- ledger ----------------------------------------------------------------------------
class PaymentCreated(EventPayload, tag="payment.created"):
    tenant_id: str
    payment_id: str
    amount: int
    currency: str
    reference: str
    balance: int
    epoch: int
    at_ms: int


class _Withdrawal(WithdrawalState, EventPayload):
    """The whole withdrawal, as both of its events (and resync_ledger) carry it."""

    epoch: int | None = None  # the actor lease's; not re-emitted by resync_ledger


class WithdrawalInitiated(_Withdrawal, tag="withdrawal.initiated"):
    pass


class WithdrawalCompleted(_Withdrawal, tag="withdrawal.completed"):
    pass


class WithdrawalRejected(_Withdrawal, tag="withdrawal.rejected"):
    pass


class OrderCreated(OrderState, EventPayload, tag="order.created"):
    """The whole order (``items``: JSON text, stored as jsonb)."""


class OrderUpdated(OrderState, EventPayload, tag="order.updated"):
    """The whole order after a status change."""


class BookingCanceled(BookingState, EventPayload, tag="booking.canceled"):
    """The whole booking after its cancel, with the slot's capacity and booked count."""

    epoch: int | None = None


class BookingCreated(EventPayload, tag="booking.created"):
    tenant_id: str
    booking_id: str
    resource_id: str
    slot_start_ms: int
    slot_end_ms: int
    capacity: int
    user_id: str
    booked: int
    epoch: int
    at_ms: int


# -- offers ----------------------------------------------------------------------------
class OfferPurchase(PurchaseRecord, EventPayload, tag="offer.purchase"):
    """A purchase record as the scripts store it in the purchases hash: the event
    carries the whole record (``offer_version``: the offer's version its change bumped
    the offer to; 0 when it did not)."""


class OfferWebhook(EventPayload, tag="offer.webhook"):
    event_id: str
    tenant_id: str
    purchase_id: str
    type: str
    outcome: str
    at_ms: int


Payload = (
    TenantSaved | TenantCheckout | ApikeyCreated | ApikeyRevoked
    | InviteSaved | InviteRedeemed
    | CodesUploaded | CodesReserved | CodesAssigned | CodesReleased | CodesResynced
    | CampaignSaved | CodesCommitted | CodesDiscarded
    | PromoSaved | PromoRedeemed | PromoUseRolledBack
    | PaymentCreated | WithdrawalInitiated | WithdrawalCompleted | WithdrawalRejected | OrderCreated | OrderUpdated
    | BookingCreated | BookingCanceled
    | OfferSaved | OfferPurchase | OfferWebhook
)
"""The tagged union of every event type a script appends."""


def tag_of(cls: type[EventPayload]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), cls
    return tag


PAYLOADS: dict[str, type[EventPayload]] = {tag_of(c): c for c in get_args(Payload)}
"""Event type (``t``) -> its payload struct."""

_decoders = {t: msgspec.json.Decoder(c, strict=False) for t, c in PAYLOADS.items()}


class Malformed(msgspec.Struct, frozen=True):
    """The payload of an entry that does not decode: why, for the dead letter."""

    reason: str


P = TypeVar("P", bound=EventPayload | Malformed, covariant=True)


class Event(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """One entry of a partition's log; ``raw`` is ``d`` as the script wrote it."""

    id: str
    partition: int
    type: str
    entity: str
    version: int
    data: P
    raw: bytes = b""

    @property
    def position(self) -> tuple[int, int]:
        return parse_stream_id(self.id)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def decode_payload(etype: str, raw: bytes | str) -> EventPayload | Malformed:
    """``d`` as the struct of ``etype``, or ``Malformed`` naming the type and the problem."""
    decoder = _decoders.get(etype)
    if decoder is None:
        return Malformed(f"unknown event type {etype!r}")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:  # names the field: "... - at `$.at_ms`"
        return Malformed(f"malformed {etype!r} event: {exc}")
    except msgspec.DecodeError as exc:
        return Malformed(f"malformed {etype!r} event: bad JSON: {exc}")


def parse_entry(
    partition: int, entry_id: bytes | str, fields: Mapping[Any, Any] | list[Any] | tuple[Any, ...]
) -> Event[EventPayload | Malformed]:
    """A stream entry as an ``Event``; never raises (a bad entry's data is ``Malformed``).

    ``fields`` as the server sent them (a flat list of names and values: the persister's
    and the dispatcher's reads, ``claims.read_new``) or as a mapping (redis-py's parsed
    replies). The layout every script writes (``t``, ``e``, ``v``, ``d``, in that order:
    lib/dg_emit.lua) is read by position, without a dict; any other goes through one.
    Names in bytes (``b"t"``) are looked up as they are; text names (a client decoding
    responses) are made bytes first. Decoding every name of every entry was a fifth of
    the persister's CPU per event (BENCHMARKS.md, "The persister's parsing and its
    parameters"); redis-py's parse of a read, a dict per entry, a quarter of what reading
    it cost (BENCHMARKS.md, "The persister's reads as the server sent them")."""
    named: Mapping[Any, Any]
    if isinstance(fields, list | tuple):  # a type check, not an ABC's: once per event read
        if (len(fields) == 8 and fields[0] == b"t" and fields[2] == b"e" and fields[4] == b"v"
                and fields[6] == b"d"):
            return _event(partition, entry_id, fields[1], fields[3], fields[5], fields[7])
        named = dict(zip(fields[::2], fields[1::2], strict=False))
    else:
        named = fields
    if named and not isinstance(next(iter(named)), bytes):
        named = {_bytes(k): v for k, v in named.items()}
    return _event(partition, entry_id, named.get(b"t", b""), named.get(b"e", b""), named.get(b"v"),
                  named.get(b"d"))


def _event(partition: int, entry_id: bytes | str, etype_raw: bytes | str, entity: bytes | str,
           version_raw: bytes | str | None, payload: bytes | str | None) -> Event[EventPayload | Malformed]:
    etype = _text(etype_raw)
    raw = b"" if payload is None else _bytes(payload)
    data: EventPayload | Malformed
    try:
        if version_raw is None:
            raise ValueError("no version")
        version = int(version_raw)
    except ValueError:
        version, data = 0, Malformed(
            f"malformed {etype!r} event: version {version_raw!r} is not an integer")
    else:
        data = decode_payload(etype, raw) if payload is not None else Malformed(
            f"malformed {etype!r} event: no payload")
    return Event(id=_text(entry_id), partition=partition, type=etype, entity=_text(entity),
                 version=version, data=data, raw=raw)
