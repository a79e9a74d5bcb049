"""Where a checkout returns the buyer: the offer's ``success_url`` / ``cancel_url``, else
the tenant's (``PUT /v1/tenants/{id}/checkout``), else dropgate's own pages
``/checkout/done`` and ``/checkout/cancelled``.

The offer's and the tenant's URLs come with the hold (the purchase script reads them
in the same step); this only picks and fills them in: ``{PURCHASE_ID}`` here, and
``{CHECKOUT_SESSION_ID}`` by the provider (Stripe fills it in itself; the sandbox
knows its session id up front and fills it in here).
"""

from __future__ import annotations

from urllib.parse import quote

DONE_PATH = "/checkout/done"
CANCELLED_PATH = "/checkout/cancelled"
PURCHASE_ID = "{PURCHASE_ID}"
CHECKOUT_SESSION_ID = "{CHECKOUT_SESSION_ID}"


def redirect_urls(*, public_url: str, purchase_id: str, success_url: str = "", cancel_url: str = "",
                  session_id: str | None = None) -> tuple[str, str]:
    """(success, cancel) URLs of one purchase's checkout. ``success_url`` /
    ``cancel_url`` are the offer's, else the tenant's ('' when neither has one)."""
    base = public_url.rstrip("/")
    success = success_url or f"{base}{DONE_PATH}?purchase_id={PURCHASE_ID}"
    cancel = cancel_url or f"{base}{CANCELLED_PATH}?purchase_id={PURCHASE_ID}"
    return fill(success, purchase_id, session_id), fill(cancel, purchase_id, session_id)


def fill(url: str, purchase_id: str, session_id: str | None = None) -> str:
    """``{PURCHASE_ID}`` (and, when known, ``{CHECKOUT_SESSION_ID}``) filled in."""
    url = url.replace(PURCHASE_ID, quote(purchase_id, safe=""))
    if session_id is not None:
        url = url.replace(CHECKOUT_SESSION_ID, quote(session_id, safe=""))
    return url
