"""Which scope a tenant route needs, derived from its method and path.

Reads need ``read``; a write needs its resource's write scope. Derived here, in one
table, so a new route gets its scope without a line of its own; a route may still
name one (``ApiRoutes.route(scope=...)``: approve and reject, whose path alone does
not say). A tenant write under a path this table does not know needs every scope
(``"*"``): a narrowed key is never let through a route nobody thought about.
"""

from __future__ import annotations

_WRITE_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("/v1/payments", "payments:write"),
    ("/v1/withdrawals", "withdrawals:initiate"),
    ("/v1/orders", "orders:write"),
    ("/v1/bookings", "bookings:write"),
    ("/v1/invites", "invites:write"),
    ("/v1/promos", "promos:write"),
    ("/v1/purchases", "purchases:write"),
    ("/v1/campaigns", "codes:write"),
    ("/v1/offers", "offers:write"),
    ("/v1/webhook-endpoints", "webhooks:write"),
)
EVERY_SCOPE = "*"


def route_scope(method: str, path: str) -> str:
    if method in ("GET", "HEAD"):
        return "read"
    if path.startswith("/v1/offers/") and path.endswith("/purchase"):
        return "purchases:write"
    if path.startswith("/v1/withdrawals/") and (path.endswith("/approve") or path.endswith("/reject")):
        return "withdrawals:approve"
    for prefix, scope in _WRITE_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return EVERY_SCOPE
