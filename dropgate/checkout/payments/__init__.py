"""Payment providers: Stripe (the official library, async) and a built-in sandbox."""
