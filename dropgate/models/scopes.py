"""The scopes a key may carry (docs/api.md, "Who did it: principals and scopes")."""

from __future__ import annotations

from typing import Literal, get_args

Scope = Literal[
    "payments:write", "withdrawals:initiate", "withdrawals:approve", "orders:write",
    "bookings:write", "invites:write", "promos:write", "offers:write", "purchases:write",
    "codes:write", "webhooks:write", "read",
]
SCOPES: tuple[str, ...] = get_args(Scope)
