"""The buyer's pages: the sandbox's checkout (Pay / Cancel), and dropgate's own
``/checkout/done`` and ``/checkout/cancelled`` pages a Checkout session returns to.

Paying (and the client's abandon) sends this API's own webhook endpoint a
Stripe-shaped, Stripe-signed event over HTTP, exactly as Stripe would, so the sandbox
exercises the production webhook path; a browser's form post then answers 303 to the
purchase's ``success_url`` / ``cancel_url`` as Stripe's hosted page does (its Cancel,
like Stripe's back link, sends no event). The done
and cancelled pages show the purchase's live status, reloading themselves while it
is pending (no script, no framework). The HTML is templates here, apart from the
routes (``http/routes/offers.py`` only maps the URLs to these functions).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from string import Template

import aiohttp
import msgspec

from dropgate.checkout.payments.base import PaymentProvider, sign_payload
from dropgate.checkout.payments.sandbox import SandboxProvider, checkout_event, parse_session_id
from dropgate.checkout.redirects import Redirects, for_session
from dropgate.engine.offers import Offers, PurchaseRecord
from dropgate.errors import NotFound
from dropgate.ids import check_id
from dropgate.models.offers import SandboxResult
from dropgate.money import format_amount

CHECKOUT_PAGE = Template("""<!doctype html><meta charset="utf-8"><title>dropgate sandbox checkout</title>
<h1>Sandbox checkout</h1>
<p>$quantity x offer $offer_id: $amount
$currency (purchase $purchase_id, status $status)</p>
<form method="post" action="/v1/sandbox/checkout/$session_id/complete"><button>Pay</button></form>
<form method="post" action="/v1/sandbox/checkout/$session_id/expire"><button>Cancel</button></form>""")
_WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=10)
PURCHASE_PAGE = Template("""<!doctype html><meta charset="utf-8">$refresh<title>$title</title>
<h1>$title</h1>
<p>$quantity x <span id="offer">$offer</span>: $amount $currency</p>
<p>Purchase <code id="purchase">$purchase_id</code>: status <strong id="status">$status</strong></p>
<p>$note</p>""")
_REFRESH_S = 2
_NOTES = {
    "pending": "Waiting for the payment to be confirmed; this page refreshes by itself.",
    "paid": "Paid: thank you.",
    "released": "The checkout ended without a payment; nothing was charged.",
    "expired": "The hold expired without a payment; nothing was charged.",
    "refunded": "The payment was refunded.",
}


async def purchase_page(offers: Offers, tenant_id: str, purchase_id: str, *, cancelled: bool) -> str:
    """``/checkout/done`` (``cancelled`` False) or ``/checkout/cancelled``: the purchase's
    offer, quantity and live status (read from Redis, not the lagging PostgreSQL)."""
    p = await offers.purchase(check_id(tenant_id, "tenant_id"), check_id(purchase_id, "purchase_id"))
    try:
        state = await offers.read(p.tenant_id, p.offer_id)
        offer = str(getattr(state, "name", p.offer_id))  # a spec field (specs: OFFER)
    except NotFound:  # deleted since: the id still says what was bought
        offer = p.offer_id
    title = "Checkout cancelled" if cancelled else "Thank you for your purchase"
    note = ("You left the checkout; nothing was charged. The units are held until the hold "
            "expires." if cancelled and p.status == "pending" else _NOTES.get(p.status, ""))
    refresh = f'<meta http-equiv="refresh" content="{_REFRESH_S}">' if p.status == "pending" else ""
    return PURCHASE_PAGE.substitute(
        refresh=refresh, title=title, quantity=p.quantity, offer=html.escape(offer),
        amount=format_amount(p.amount_minor, p.currency), currency=html.escape(p.currency.upper()),
        purchase_id=html.escape(p.purchase_id), status=html.escape(p.status), note=html.escape(note))


class SandboxPages:
    """The sandbox checkout of one process: NotFound unless the provider is the sandbox."""

    def __init__(self, offers: Offers, provider: PaymentProvider,
                 redirects: Callable[..., Redirects]) -> None:
        self._offers = offers
        self._provider = provider
        self._redirects = redirects  # (tenant id, purchase id) -> its URLs: Purchases.redirects

    async def _session(self, session_id: str) -> tuple[SandboxProvider, PurchaseRecord]:
        """The sandbox and the session's purchase. Only the sandbox serves these pages,
        and only for its own sessions: a purchase whose recorded session is another
        (another provider's) is not found, whatever id the caller builds."""
        parsed = parse_session_id(session_id)
        if not isinstance(self._provider, SandboxProvider) or parsed is None:
            raise NotFound("No such sandbox checkout session.")
        tenant_id, purchase_id = parsed
        p = await self._offers.purchase(tenant_id, purchase_id)
        if p.session_id is not None and p.session_id != session_id:
            raise NotFound("No such sandbox checkout session.")
        return self._provider, p

    async def redirects(self, session_id: str) -> Redirects:
        """Where the sandbox's Pay / Cancel send the browser (``{CHECKOUT_SESSION_ID}`` filled)."""
        _, p = await self._session(session_id)
        success_url, cancel_url = await self._offers.checkout_urls(p.tenant_id, p.offer_id)
        urls = self._redirects(p.tenant_id, p.purchase_id, success_url=success_url, cancel_url=cancel_url)
        return Redirects(success_url=for_session(urls.success_url, session_id),
                         cancel_url=for_session(urls.cancel_url, session_id))

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
