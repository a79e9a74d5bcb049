"""Checkout: the application layer over the offer engine.

- ``purchases.py``: the purchase flow (rate limit, idempotency, hold in one batched
  script call; the provider's checkout session; the answer's bytes);
- ``webhooks.py``: the provider's events, verified, confirming or releasing holds;
- ``payments/``: the providers (Stripe, the built-in sandbox);
- ``pages.py``: the sandbox's checkout pages.

The engine below answers domain results; the HTTP routes above only map URLs here.
"""
