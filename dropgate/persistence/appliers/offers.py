"""Offers: definitions upserted by version (from the spec); purchases upserted by version with one
history row per version (the trigger derives offers.reserved/sold from them);
webhook events inserted once."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import Event, OfferPurchase, OfferWebhook
from dropgate.persistence.appliers.base import Applier, saved_upsert, ts
from dropgate.specs.entities import OFFER


async def offer_purchase(conn: asyncpg.Connection, events: list[Event[OfferPurchase]]) -> None:
    rows = [
        (d.tenant_id, d.purchase_id, d.offer_id, d.user_id, d.quantity, d.status, d.amount_minor,
         d.currency, ts(d.hold_expires_ms), d.session_id, d.payment_intent, d.refund_id,
         d.retaken, ts(d.created_ms), ts(d.updated_ms), e.version)
        for e in events
        for d in (e.data,)
    ]
    await conn.executemany(
        """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                        amount_minor, currency, hold_expires_at, checkout_session_id,
                                        payment_intent, refund_id, retaken, created_at, updated_at,
                                        version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           ON CONFLICT (tenant_id, purchase_id) DO UPDATE SET
               status = EXCLUDED.status,
               checkout_session_id = COALESCE(EXCLUDED.checkout_session_id,
                                              offer_purchases.checkout_session_id),
               payment_intent = COALESCE(EXCLUDED.payment_intent, offer_purchases.payment_intent),
               refund_id = COALESCE(EXCLUDED.refund_id, offer_purchases.refund_id),
               retaken = EXCLUDED.retaken, updated_at = EXCLUDED.updated_at,
               version = EXCLUDED.version
           WHERE offer_purchases.version < EXCLUDED.version""",
        rows,
    )
    await conn.executemany(
        """INSERT INTO offer_purchase_history (tenant_id, purchase_id, version, status, at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        [(r[0], r[1], r[15], r[5], r[14]) for r in rows],
    )
    await conn.executemany(
        """UPDATE offers SET version = $3
           WHERE tenant_id = $1 AND offer_id = $2 AND version < $3""",
        [(e.data.tenant_id, e.data.offer_id, e.data.offer_version) for e in events
         if e.data.offer_version],
    )


async def offer_webhook(conn: asyncpg.Connection, events: list[Event[OfferWebhook]]) -> None:
    await conn.executemany(
        """INSERT INTO webhook_events (event_id, tenant_id, purchase_id, type, outcome, received_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING""",
        [(d.event_id, d.tenant_id, d.purchase_id, d.type, d.outcome, ts(d.at_ms))
         for d in (e.data for e in events)],
    )


APPLIERS: dict[str, Applier] = {
    "offer.saved": saved_upsert(OFFER),
    "offer.purchase": offer_purchase,
    "offer.webhook": offer_webhook,
}
