"""Stripe Checkout through the official ``stripe`` library's async client.

The key is read from settings when the provider is built (at start-up), into a
``StripeClient`` of this provider alone: nothing is read at import time and the
library's global ``stripe.api_key`` is never touched, so two runtimes with two keys
coexist and a missing key is a clear start-up error, not a crash on a purchase.
Every call is bounded by ``stripe_timeout_s`` and carries an idempotency key
derived from the purchase, so a retried call can never open a second session or
refund twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import stripe

from dropgate.checkout.payments.base import (
    CheckoutRequest,
    CheckoutSession,
    PaymentProviderError,
    PaymentProviderRefused,
    ProviderConfigError,
    metadata,
)
from dropgate.settings import Settings

# Stripe: a session's expires_at is 30 min to 24 h after its creation.
MIN_EXPIRY_S = 30 * 60
MAX_EXPIRY_S = 24 * 3600
# The session is created a moment after its hold (and expires with it), so the hold must
# outlast Stripe's minimum by the longest that moment can take under load.
CREATION_SLACK_S = 60


def check_settings(settings: Settings) -> None:
    """Refuse, in one line naming the variable, settings Stripe cannot work with."""
    if not settings.stripe_api_key:
        raise ProviderConfigError(
            "payment provider 'stripe' needs DROPGATE_STRIPE_API_KEY "
            "(or DROPGATE_PAYMENT_PROVIDER=sandbox, where nothing is charged)")
    if not settings.stripe_webhook_secret:
        raise ProviderConfigError(
            "payment provider 'stripe' needs DROPGATE_STRIPE_WEBHOOK_SECRET "
            "(the signing secret of the webhook endpoint /v1/webhooks/stripe)")
    if not MIN_EXPIRY_S + CREATION_SLACK_S <= settings.hold_ttl_s <= MAX_EXPIRY_S - CREATION_SLACK_S:
        raise ProviderConfigError(
            f"DROPGATE_HOLD_TTL_S must be from {MIN_EXPIRY_S + CREATION_SLACK_S} to "
            f"{MAX_EXPIRY_S - CREATION_SLACK_S} with "
            f"payment provider 'stripe' (a Checkout session lasts 30 min to 24 h), "
            f"got {settings.hold_ttl_s}")


class StripeProvider:
    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        assert settings.stripe_api_key is not None and settings.stripe_webhook_secret is not None
        self._secret = settings.stripe_webhook_secret
        self._timeout_s = settings.stripe_timeout_s
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        base: dict[str, str] = {}
        if settings.stripe_api_base:
            base = {"api": settings.stripe_api_base.rstrip("/")}
        self._client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses=base,  # type: ignore[arg-type]
            http_client=self._http,
            max_network_retries=0,
        )

    @property
    def webhook_secret(self) -> str:
        return self._secret

    async def _bounded(self, what: str, call: Any) -> Any:
        try:
            return await asyncio.wait_for(call, timeout=self._timeout_s + 1)
        except TimeoutError:
            raise PaymentProviderError(f"stripe {what}: no answer within {self._timeout_s}s") from None
        except stripe.InvalidRequestError as exc:
            raise PaymentProviderRefused(
                f"stripe {what}: refused (HTTP {exc.http_status}): {exc.user_message or exc._message}"
            ) from exc
        except stripe.StripeError as exc:
            raise PaymentProviderError(
                f"stripe {what}: {type(exc).__name__} (HTTP {exc.http_status}): "
                f"{exc.user_message or exc._message}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise PaymentProviderError(f"stripe {what}: {type(exc).__name__}: {exc}") from exc

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{
                "quantity": request.quantity,
                "price_data": {
                    "currency": request.currency,
                    "unit_amount": request.unit_amount_minor,
                    "product_data": {"name": request.name},
                },
            }],
            # exactly the hold's expiry (rounded up): the same on a recovery's replay, which
            # Stripe's idempotency key requires
            "expires_at": request.expires_at_s,
            "client_reference_id": request.purchase_id,
            "metadata": metadata(request),
            "payment_intent_data": {"metadata": metadata(request)},
            # Stripe fills {CHECKOUT_SESSION_ID} in on success_url (checkout/redirects.py)
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }
        session = await self._bounded("checkout.sessions.create", self._client.v1.checkout.sessions.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"dropgate-checkout-{request.tenant_id}-{request.purchase_id}"},
        ))
        # Never trust the shape of a provider's answer: a session without an id or a
        # URL, or with a control character in either (CheckoutSession), is a provider
        # failure (hold released, 503), not a crash.
        session_id = getattr(session, "id", None)
        url = getattr(session, "url", None)
        if not (isinstance(session_id, str) and session_id.isprintable() and session_id
                and isinstance(url, str) and url.isprintable() and url):
            raise PaymentProviderError(
                f"stripe checkout.sessions.create answered without a usable id or url: {session!r:.200}")
        return CheckoutSession(session_id=session_id, url=url)

    async def refund(self, *, payment_intent: str, purchase_id: str, amount_minor: int | None = None,
                     key: str = "") -> str:
        params: dict[str, Any] = {"payment_intent": payment_intent, "metadata": {"purchase_id": purchase_id}}
        if amount_minor is not None:
            params["amount"] = amount_minor
        refund = await self._bounded("refunds.create", self._client.v1.refunds.create_async(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"dropgate-refund-{purchase_id}" + (f"-{key}" if key else "")},
        ))
        refund_id = getattr(refund, "id", None)
        if not isinstance(refund_id, str) or not refund_id:
            raise PaymentProviderError(f"stripe refunds.create answered without an id: {refund!r:.200}")
        return refund_id

    async def expire_checkout(self, session_id: str) -> None:
        await self._bounded("checkout.sessions.expire",
                            self._client.v1.checkout.sessions.expire_async(session_id))

    async def payment_metadata(self, payment_intent: str) -> dict[str, str]:
        intent = await self._bounded("payment_intents.retrieve",
                                     self._client.v1.payment_intents.retrieve_async(payment_intent))
        meta = getattr(intent, "metadata", None)
        return {str(k): str(v) for k, v in (meta.to_dict() if meta is not None else {}).items()}

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
