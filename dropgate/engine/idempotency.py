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

from dropgate.errors import ValidationError

MAX_KEY_LENGTH = 255


def request_digest(text: str) -> str:
    """A short stable digest (40 hex characters of SHA-256) of a key or a request."""
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def key_digest(key: str | None) -> str:
    """The digest a record is filed under, "" without a key; a key of the wrong
    length is a 400 before anything runs."""
    if key is None:
        return ""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValidationError(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters.",
                              details={"field": "Idempotency-Key"})
    return request_digest(key)
