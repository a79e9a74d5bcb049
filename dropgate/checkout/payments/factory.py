"""Build the configured payment provider (at start-up)."""

from __future__ import annotations

from dropgate.checkout.payments.base import PaymentProvider, ProviderConfigError
from dropgate.checkout.payments.sandbox import SandboxProvider
from dropgate.checkout.payments.stripe_provider import StripeProvider
from dropgate.settings import Settings


def build_provider(settings: Settings) -> PaymentProvider:
    """``payment_provider`` when set, else ``stripe`` with a Stripe key and ``sandbox`` without."""
    choice = settings.payment_provider or ("stripe" if settings.stripe_api_key else "sandbox")
    if choice == "stripe":
        return StripeProvider(settings)
    if choice == "sandbox":
        return SandboxProvider(settings)
    raise ProviderConfigError(
        f"DROPGATE_PAYMENT_PROVIDER must be 'stripe' or 'sandbox', not {choice!r}")
