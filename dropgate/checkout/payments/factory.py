"""Build the configured payment provider (at start-up).

The provider is chosen explicitly (``DROPGATE_PAYMENT_PROVIDER``): a server that
silently fell back to the sandbox would hand out goods for free. ``serve`` refuses
to start without it (``require_provider``); the other commands (migrate, keys,
reconcile, the persister) never open a checkout, so they run with ``Unconfigured``,
which refuses every checkout and refund instead of faking one.
"""

from __future__ import annotations

import secrets

from dropgate.checkout.payments.base import (
    CheckoutRequest,
    CheckoutSession,
    PaymentProvider,
    PaymentProviderError,
    ProviderConfigError,
)
from dropgate.checkout.payments.sandbox import SandboxProvider
from dropgate.checkout.payments.stripe_provider import StripeProvider, check_settings
from dropgate.settings import Settings

MISSING = ("DROPGATE_PAYMENT_PROVIDER is not set: set it to 'stripe' (real payments, with "
           "DROPGATE_STRIPE_API_KEY and DROPGATE_STRIPE_WEBHOOK_SECRET) or 'sandbox' (nothing is charged)")


class Unconfigured:
    """No provider chosen (a command that takes no payments): every call is refused."""

    name = "none"

    def __init__(self) -> None:
        self._secret = "whsec_none_" + secrets.token_hex(16)  # verifies no real event

    @property
    def webhook_secret(self) -> str:
        return self._secret

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        raise PaymentProviderError(MISSING)

    async def refund(self, *, payment_intent: str, purchase_id: str, amount_minor: int | None = None,
                     key: str = "") -> str:
        raise PaymentProviderError(MISSING)

    async def expire_checkout(self, session_id: str) -> None:
        raise PaymentProviderError(MISSING)

    async def payment_metadata(self, payment_intent: str) -> dict[str, str]:
        raise PaymentProviderError(MISSING)

    async def close(self) -> None:
        return None


def require_provider(settings: Settings) -> None:
    """What ``serve`` checks first, before waiting for the stores: a provider is chosen,
    and Stripe has what it needs (one line naming the variable)."""
    if settings.payment_provider is None:
        raise ProviderConfigError(MISSING)
    if settings.payment_provider == "stripe":
        check_settings(settings)


def build_provider(settings: Settings) -> PaymentProvider:
    """The provider ``payment_provider`` names; ``Unconfigured`` when unset."""
    choice = settings.payment_provider
    if choice == "stripe":
        return StripeProvider(settings)
    if choice == "sandbox":
        return SandboxProvider(settings)
    if choice is None:
        return Unconfigured()
    raise ProviderConfigError(
        f"DROPGATE_PAYMENT_PROVIDER must be 'stripe' or 'sandbox', not {choice!r}")
