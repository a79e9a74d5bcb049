"""``Dropgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

The timestamp is inside the signed text, so a receiver that also bounds its age
(``dropgate.client.webhooks.verify``'s tolerance) refuses a replayed old delivery.
Each attempt is signed afresh (a new ``t``); the body, and so the event ``id`` in it,
is the same bytes on every attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Dropgate-Signature"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, t, body)}"
