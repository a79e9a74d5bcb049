"""Idempotency records: one answer per ``Idempotency-Key``, whatever the route.

A record lives in its tenant's partition (``Keys.offer_idempotency``, field
``<tenant>:<digest of the key>``) for ``idempotency_ttl_s`` and is written only by
scripts that include ``lua/lib/dg_idem.lua``:

- the hot redemptions (invite redeem, promo redeem, code reservation) decide a
  request's record in the call that decides its effect (``RecordKey``, ``Answered``):
  a repeat is answered there, and a first request's answer is filed with its effect,
  atomically, as the script's own JSON answer, which the route renders as it renders
  a fresh one. No call is paid for the record, and no record is ever left running
  between an effect and its answer (a crash there made a retry wait, then run twice);
- the purchase batch marks and stores its records inside its own calls (its answer
  waits for the payment provider in between);
- ``idem_batch-2.lua`` for every other route that replays by key
  (``http/idempotency.py``), which decides the records of a partition's concurrent
  requests in one call. There a record holds, once finished, the status and the
  exact bytes answered: the engine stores them as opaque bytes and never builds an
  HTTP answer itself.

Semantics (Stripe's, kept from purchases): the same key with the same request
replays the stored answer; with another request it is 422
``IDEMPOTENCY_KEY_REUSED``; while the first still runs it is 409
``IDEMPOTENCY_KEY_IN_USE``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from dropgate.engine.actors.batcher import Batcher
from dropgate.engine.context import EngineContext
from dropgate.errors import DropgateError, ValidationError, error_for

T = TypeVar("T")

MAX_KEY_LENGTH = 255


def request_digest(text: str | bytes) -> str:
    """A short stable digest (40 hex characters of SHA-256) of a key or a request."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:40]


def key_digest(key: str | None) -> str:
    """The digest a record is filed under, "" without a key; a key of the wrong
    length is a 400 before anything runs."""
    if key is None:
        return ""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ValidationError(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
                              details={"field": "Idempotency-Key"})
    return request_digest(key)


def stale_after_ms(stripe_timeout_s: float) -> int:
    """How long a running record's request may run before it counts as stopped (a
    crash): past any provider call's timeout, and at least a minute."""
    return int(max(60.0, 3 * stripe_timeout_s) * 1000)


def record_times(ctx: EngineContext) -> tuple[int, int]:
    """(a record's ttl ms, ms after which a running record's request counts as stopped):
    the two arguments every script that files records takes."""
    return ctx.settings.idempotency_ttl_s * 1000, stale_after_ms(ctx.settings.stripe_timeout_s)


class Replay(msgspec.Struct, frozen=True):
    """A finished request's answer: its status and body, byte for byte."""

    status: int
    body: bytes


class RecordKey(msgspec.Struct, array_like=True, frozen=True):
    """A keyed request's record, as the script that decides its effect takes it
    (one ``[field, fingerprint]`` of a JSON array)."""

    field: str  # "<tenant>:<key digest>": the partition's idempotency hash's field
    fingerprint: str  # of the request (method, path, body): another request is 422


def record_key(tenant_id: str, digest: str, fingerprint: str) -> RecordKey:
    """The record of a request under a key: filed per tenant, so that two tenants' keys
    never meet."""
    return RecordKey(f"{tenant_id}:{digest}", fingerprint)


class KeyedAnswer(msgspec.Struct):
    """What a script's answer to a keyed request may hold besides its own fields
    (lib/dg_idem.lua's ``ask``): a refusal, the replay mark, or an HTTP answer stored
    by ``idem_batch`` before the route's script kept its records itself."""

    err: str | None = None
    details: dict[str, Any] = {}
    replayed: int = 0
    status: int = 0
    body: msgspec.Raw = msgspec.Raw(b"")


@dataclass(slots=True, frozen=True)
class Answered(Generic[T]):
    """A keyed request's outcome: its value or its refusal (``error``, not raised: a
    replayed one is sent, a fresh one raised by the route), or a stored HTTP answer."""

    value: T | None
    error: DropgateError | None = None
    replayed: bool = False
    stored: Replay | None = None


def answered(answer: KeyedAnswer, value: T) -> Answered[T]:
    """``answer``'s outcome, ``value`` being what its own fields give on success."""
    if answer.status:
        return Answered(None, None, True, Replay(answer.status, bytes(answer.body)))
    if answer.err is not None:
        return Answered(None, error_for(answer.err, details=answer.details or None), answer.replayed == 1)
    return Answered(value, None, answer.replayed == 1)


_encode_records = msgspec.json.Encoder().encode


def records_arg(records: list[RecordKey | None]) -> str | bytes:
    """A batch's records as its redemption script takes them: one JSON array of
    ``[field, fingerprint]`` or 0 (no key) per request, in order; "" when no request of
    the batch has a key (the script then skips the records altogether)."""
    if not any(records):
        return ""
    return _encode_records([record or 0 for record in records])


# (its entry in the call's JSON array, the body it stores): (("b", field, fingerprint), b""),
# (("f", field, fingerprint, status, len(body)), body), (("r", field, fingerprint), b"")
_Item = tuple[tuple[str, str, str] | tuple[str, str, str, int, int], bytes]
_Partition = tuple[str, str]  # (idempotency hash, its expiry zset)
_results = msgspec.json.Decoder(list[str])
_encode_items = msgspec.json.Encoder().encode
_BEGUN = ""

MAX_COALESCED = 64  # records of one partition decided by one script call
MAX_QUEUED = 10_000  # records waiting for one partition in one process
IN_FLIGHT = 2  # script calls per partition under way at once


class Idempotency:
    """``idem_batch-2.lua`` <-> ``begin``, ``finish`` and ``release``.

    Concurrent requests of one partition share one script call (the engine's
    ``Batcher``): a crowd that sends keys, as dropgate's client always does, paid two
    script calls of its own per request around its coalesced operation, and the
    Redis connections those took were most of its cost (BENCHMARKS.md, "Keys on
    every hot path"). A lone request still leaves at once.
    """

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self._ttl_ms, self._stale_ms = record_times(ctx)
        self.records: Batcher[_Partition, _Item, str] = Batcher(
            self._decide, max_batch=MAX_COALESCED, max_queue=MAX_QUEUED, max_in_flight=IN_FLIGHT,
            name="idempotency_records", queued="requests for their idempotency keys")

    async def close(self) -> None:
        """Let queued records be written (briefly), then stop their drains."""
        await self.records.close()

    async def begin(self, tenant_id: str, digest: str, fingerprint: str) -> Replay | None:
        """Mark the request running (None: run it), or the stored answer to replay;
        raises ``IdempotencyKeyReused`` / ``IdempotencyKeyInUse``."""
        answer = await self._submit(tenant_id, (("b", f"{tenant_id}:{digest}", fingerprint), b""))
        if answer == _BEGUN:
            return None
        if answer.startswith("!"):
            raise error_for(answer[1:])
        status, _, body = answer.partition(" ")
        return Replay(int(status), body.encode())

    async def finish(self, tenant_id: str, digest: str, fingerprint: str, *, status: int,
                     body: bytes) -> None:
        """Store the answer the client is about to see."""
        await self._submit(tenant_id, (("f", f"{tenant_id}:{digest}", fingerprint, status, len(body)), body),
                           completes=True)

    async def release(self, tenant_id: str, digest: str, fingerprint: str) -> None:
        """Drop the running record: the request was refused before it changed anything."""
        await self._submit(tenant_id, (("r", f"{tenant_id}:{digest}", fingerprint), b""), completes=True)

    def _submit(self, tenant_id: str, item: _Item, *, completes: bool = False) -> asyncio.Future[str]:
        """Queue one record's operation with its partition's next call. ``completes``
        (finish, release): at the head of the queue and never refused, since the request
        it completes already ran."""
        tk = self._ctx.keys.tenant(tenant_id)
        return self.records.enqueue((tk.offer_idempotency(), tk.offer_idempotency_expiry()), item,
                                    first=completes)

    async def _decide(self, partition: _Partition, items: list[_Item]) -> list[str]:
        """One script call for a batch of one partition's records, each decided on its own."""
        raw = await self._ctx.scripts.raw("idem_batch", list(partition), [
            self._ttl_ms, self._stale_ms, _encode_items([entry for entry, _ in items]),
            b"".join(body for _, body in items)])
        return _results.decode(raw)
