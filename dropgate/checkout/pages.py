"""The sandbox provider's checkout pages: the page a buyer sees, and its Pay / Cancel.

Paying or cancelling sends this API's own webhook endpoint a Stripe-shaped,
Stripe-signed event over HTTP, exactly as Stripe would, so the sandbox exercises
the production webhook path. The HTML is a template here, apart from the routes
(``http/routes/offers.py`` only maps the URLs to these functions).
"""

from __future__ import annotations

import html
from string import Template

import aiohttp
import msgspec

from dropgate.checkout.payments.base import PaymentProvider, sign_payload
from dropgate.checkout.payments.sandbox import SandboxProvider, checkout_event, parse_session_id
from dropgate.engine.offers import Offers, PurchaseRecord
from dropgate.errors import NotFound
from dropgate.models.offers import SandboxResult
from dropgate.money import format_amount

CHECKOUT_PAGE = Template("""<!doctype html><meta charset="utf-8"><title>dropgate sandbox checkout</title>
<h1>Sandbox checkout</h1>
<p>$quantity x offer $offer_id: $amount
$currency (purchase $purchase_id, status $status)</p>
<form method="post" action="/v1/sandbox/checkout/$session_id/complete"><button>Pay</button></form>
<form method="post" action="/v1/sandbox/checkout/$session_id/expire"><button>Cancel</button></form>""")
_WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=10)


class SandboxPages:
    """The sandbox checkout of one process: NotFound unless the provider is the sandbox."""

    def __init__(self, offers: Offers, provider: PaymentProvider) -> None:
        self._offers = offers
        self._provider = provider

    async def _session(self, session_id: str) -> tuple[SandboxProvider, PurchaseRecord]:
        parsed = parse_session_id(session_id)
        if not isinstance(self._provider, SandboxProvider) or parsed is None:
            raise NotFound("No such sandbox checkout session.")
        tenant_id, purchase_id = parsed
        return self._provider, await self._offers.purchase(tenant_id, purchase_id)

    async def checkout_page(self, session_id: str) -> str:
        """The page: what is bought, and the two buttons."""
        _, p = await self._session(session_id)
        return CHECKOUT_PAGE.substitute(
            quantity=p.quantity, offer_id=html.escape(p.offer_id),
            amount=format_amount(p.amount_minor, p.currency), currency=html.escape(p.currency),
            purchase_id=html.escape(p.purchase_id), status=html.escape(p.status),
            session_id=html.escape(session_id))

    async def send(self, session_id: str, event_type: str, *, origin: str) -> SandboxResult:
        """Send ``event_type`` for the session to ``origin``'s webhook endpoint, signed."""
        provider, p = await self._session(session_id)
        payload = checkout_event(event_type, session_id=session_id, purchase=msgspec.to_builtins(p))
        headers = {"Stripe-Signature": sign_payload(payload, provider.webhook_secret),
                   "Content-Type": "application/json"}
        async with aiohttp.ClientSession(timeout=_WEBHOOK_TIMEOUT) as session, \
                session.post(origin + "/v1/webhooks/stripe", data=payload, headers=headers) as response:
            body = await response.json(content_type=None)
            return SandboxResult(webhook_status=response.status, webhook_response=body)
