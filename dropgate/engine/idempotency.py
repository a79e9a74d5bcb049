"""Idempotency records: one answer per ``Idempotency-Key``, whatever the route.

A record lives in its tenant's partition (``Keys.offer_idempotency``, field
``<tenant>:<digest of the key>``) for ``idempotency_ttl_s`` and is written only by
scripts that include ``lua/lib/dg_idem.lua``: the purchase batch (which marks and
stores its records inside its own call, so a purchase pays no extra round trip) and
``idem_begin-2.lua`` / ``idem_finish-1.lua`` for every other route that replays by
key (``http/idempotency.py``). A record holds the request's fingerprint and, once
finished, the status and the exact bytes answered: the engine stores them as
opaque bytes and never builds an HTTP answer itself.

Semantics (Stripe's, kept from purchases): the same key with the same request
replays the stored answer; with another request it is 422
``IDEMPOTENCY_KEY_REUSED``; while the first still runs it is 409
``IDEMPOTENCY_KEY_IN_USE``.
"""

from __future__ import annotations

import hashlib

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.engine.scripts import decode_result
from dropgate.errors import ValidationError

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


class Replay(msgspec.Struct, frozen=True):
    """A finished request's answer: its status and body, byte for byte."""

    status: int
    body: bytes


class Idempotency:
    """``idem_begin-2.lua`` <-> ``begin``, ``idem_finish-1.lua`` <-> ``finish`` / ``release``."""

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self._ttl_ms = ctx.settings.idempotency_ttl_s * 1000
        self._stale_ms = stale_after_ms(ctx.settings.stripe_timeout_s)

    async def begin(self, tenant_id: str, digest: str, fingerprint: str) -> Replay | None:
        """Mark the request running (None: run it), or the stored answer to replay;
        raises ``IdempotencyKeyReused`` / ``IdempotencyKeyInUse``."""
        tk = self._ctx.keys.tenant(tenant_id)
        raw = await self._ctx.scripts.raw(
            "idem_begin", [tk.offer_idempotency(), tk.offer_idempotency_expiry()],
            [f"{tenant_id}:{digest}", fingerprint, self._ttl_ms, self._stale_ms])
        if not raw:
            return None
        if raw.startswith(b"{"):
            decode_result(raw)  # raises the error of its code
        status, _, body = raw.partition(b" ")
        return Replay(int(status), body)

    async def finish(self, tenant_id: str, digest: str, fingerprint: str, *, status: int,
                     body: bytes) -> None:
        """Store the answer the client is about to see."""
        await self._call_finish(tenant_id, digest, fingerprint, str(status), body)

    async def release(self, tenant_id: str, digest: str, fingerprint: str) -> None:
        """Drop the running record: the request was refused before it changed anything."""
        await self._call_finish(tenant_id, digest, fingerprint, "", b"")

    async def _call_finish(self, tenant_id: str, digest: str, fingerprint: str, status: str,
                           body: bytes) -> None:
        tk = self._ctx.keys.tenant(tenant_id)
        await self._ctx.scripts.raw("idem_finish", [tk.offer_idempotency()],
                                    [f"{tenant_id}:{digest}", fingerprint, status, body])
