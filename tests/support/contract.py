"""docs/api.md's routes, as (method, path) with ``{}`` for each path parameter.

Tests check the OpenAPI document, the app's router and the client against this
list. ``PENDING`` holds the routes of domains not merged on this branch yet: a
test fails while a pending route is documented, so whoever merges a domain moves
its routes out of ``PENDING`` (and adds its client namespace) in the same change.
"""

from __future__ import annotations

import re

CONTRACT: frozenset[tuple[str, str]] = frozenset({
    # tenants and keys (admin)
    ("POST", "/v1/tenants"), ("GET", "/v1/tenants/{}"), ("PUT", "/v1/tenants/{}/subscription"),
    ("POST", "/v1/keys"), ("DELETE", "/v1/keys/{}"),
    # subscription-gated operations
    ("POST", "/v1/payments"), ("POST", "/v1/withdrawals"), ("POST", "/v1/withdrawals/{}/approve"),
    ("POST", "/v1/orders"), ("POST", "/v1/bookings"),
    # invites
    ("POST", "/v1/invites"), ("GET", "/v1/invites/{}"), ("PATCH", "/v1/invites/{}"),
    ("POST", "/v1/invites/{}/redeem"),
    # promos
    ("POST", "/v1/promos"), ("GET", "/v1/promos/{}"), ("PATCH", "/v1/promos/{}"),
    ("POST", "/v1/promos/{}/redeem"), ("DELETE", "/v1/promos/{}/uses/{}"),
    # offers and purchases
    ("POST", "/v1/offers"), ("GET", "/v1/offers"), ("GET", "/v1/offers/{}"), ("PATCH", "/v1/offers/{}"),
    ("POST", "/v1/offers/{}/purchase"), ("GET", "/v1/purchases/{}"), ("POST", "/v1/webhooks/stripe"),
    # campaign code pools
    ("POST", "/v1/campaigns/{}/codes"), ("POST", "/v1/campaigns/{}/reservations"),
    ("POST", "/v1/campaigns/{}/assign"), ("POST", "/v1/campaigns/{}/release"),
    ("GET", "/v1/campaigns/{}/codes/count"),
    # operations
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
})

PENDING: frozenset[tuple[str, str]] = frozenset()

# Routes the client has no method for on purpose: Stripe calls the webhook, not users, and
# the sandbox's checkout page and the done / cancelled return pages are HTML for a
# buyer's browser (the page's Pay / Cancel actions are ``client.sandbox.complete/expire``;
# a purchase's status is ``client.purchases.get``).
NOT_IN_CLIENT: frozenset[tuple[str, str]] = frozenset({
    ("POST", "/v1/webhooks/stripe"), ("GET", "/v1/sandbox/checkout/{}"),
    ("GET", "/checkout/done"), ("GET", "/checkout/cancelled"),
})
OPS: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
})

_PARAM = re.compile(r"\{[^}]*\}")


def shape(method: str, path: str) -> tuple[str, str]:
    """``("post", "/v1/invites/{code}/redeem")`` -> ``("POST", "/v1/invites/{}/redeem")``."""
    return method.upper(), _PARAM.sub("{}", path)
