"""Where a Checkout session sends the buyer back: ``success_url`` and ``cancel_url``.

One function decides, for every provider: the offer's URL, else the tenant's, else
dropgate's own pages (``/checkout/done`` and ``/checkout/cancelled``, ``pages.py``),
so a buyer never lands on a page nobody serves. ``{PURCHASE_ID}`` is filled in here;
``{CHECKOUT_SESSION_ID}`` is left for the provider (Stripe fills it in on
``success_url``; the sandbox fills it in itself).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import msgspec

from dropgate.settings import Settings

SESSION_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"
PURCHASE_PLACEHOLDER = "{PURCHASE_ID}"
DONE_PATH = "/checkout/done"
CANCELLED_PATH = "/checkout/cancelled"


class Redirects(msgspec.Struct, frozen=True, kw_only=True):
    success_url: str
    cancel_url: str


def public_base(settings: Settings) -> str:
    """The URL buyers' browsers reach this API at (no trailing slash)."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


# what ``urlencode`` leaves as it is: ids (``check_id``) always are, and a purchase
# builds two of these URLs, so the common case skips its per-character quoting
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def _query(tenant_id: str, purchase_id: str) -> str:
    """The query string of dropgate's own pages for a purchase (ids are ``check_id``-safe;
    quoted anyway)."""
    if _UNQUOTED.fullmatch(tenant_id) and _UNQUOTED.fullmatch(purchase_id):
        return f"?tenant_id={tenant_id}&purchase_id={purchase_id}"
    return "?" + urlencode({"tenant_id": tenant_id, "purchase_id": purchase_id})


def resolve_redirects(base: str, *, tenant_id: str, purchase_id: str,
                      offer_success_url: str | None = None, offer_cancel_url: str | None = None,
                      tenant_success_url: str | None = None,
                      tenant_cancel_url: str | None = None) -> Redirects:
    """The purchase's two URLs: the offer's, else the tenant's, else dropgate's pages
    (their query built once for both: a purchase builds these on every request)."""
    success = offer_success_url or tenant_success_url
    cancel = offer_cancel_url or tenant_cancel_url
    query = "" if success and cancel else _query(tenant_id, purchase_id)
    return Redirects(
        success_url=(success.replace(PURCHASE_PLACEHOLDER, purchase_id) if success
                     else f"{base}{DONE_PATH}{query}&session_id={SESSION_PLACEHOLDER}"),
        cancel_url=(cancel.replace(PURCHASE_PLACEHOLDER, purchase_id) if cancel
                    else f"{base}{CANCELLED_PATH}{query}"))


def for_session(url: str, session_id: str) -> str:
    """``url`` with ``{CHECKOUT_SESSION_ID}`` filled in (what Stripe does on redirect)."""
    return url.replace(SESSION_PLACEHOLDER, session_id)
