"""Every route table of the API, one module per domain."""

from __future__ import annotations

from dropgate.http.routes import campaigns, codes, invites, ledger, lists, offers, ops, promos, tenants, webhooks
from dropgate.http.routing import ApiRoutes

ROUTE_TABLES: list[ApiRoutes] = [
    ops.routes, tenants.routes, invites.routes, codes.routes, campaigns.routes, promos.routes,
    ledger.routes, offers.routes, lists.routes, webhooks.routes,
]
