"""The routes that replay by ``Idempotency-Key``: one list for the server and the client.

The server keeps an answer per key on these routes (``http/idempotency.py``; the
purchase keeps it inside its own batched script) and the client may therefore resend
them after an ambiguous failure (a timeout, a lost answer) with the same key: the
repeat answers the first result instead of applying twice. Any other POST is resent
by the client only after a failure that proves nothing was applied.

Pairs are (method, path template) exactly as the routes declare them.
"""

from __future__ import annotations

REPLAYED_BY_KEY: frozenset[tuple[str, str]] = frozenset({
    ("POST", "/v1/offers/{offer_id}/purchase"),
    ("POST", "/v1/payments"),
    ("POST", "/v1/withdrawals"),
    ("POST", "/v1/withdrawals/{withdrawal_id}/approve"),
    ("POST", "/v1/orders"),
    ("POST", "/v1/bookings"),
    ("POST", "/v1/campaigns/{campaign_id}/reservations"),
    ("POST", "/v1/invites/{code}/redeem"),
    ("POST", "/v1/promos/{code}/redeem"),
    ("POST", "/v1/purchases/{purchase_id}/refund"),
})

# 503 codes the server answers before changing anything: the client may resend any POST
# after one, and the server keeps no answer for them under a key (a retry runs again).
REFUSED_BEFORE_CHANGE: frozenset[str] = frozenset({"PERSISTENCE_LAGGING", "TENANT_BUSY"})
