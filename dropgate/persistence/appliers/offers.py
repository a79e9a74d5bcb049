"""Offers: definitions upserted by version (from the spec); purchases upserted by version with one
history row per version (the trigger derives offers.reserved/sold from them);
webhook events inserted once."""

from __future__ import annotations

import asyncpg
import msgspec

from dropgate.engine.events import Event, OfferPurchase, OfferWebhook
from dropgate.persistence.appliers.base import Applier, saved_upsert, ts
from dropgate.specs.entities import OFFER

_refunds_json = msgspec.json.Encoder(order="sorted")


async def offer_purchase(conn: asyncpg.Connection, events: list[Event[OfferPurchase]]) -> None:
    rows = [
        (d.tenant_id, d.purchase_id, d.offer_id, d.user_id, d.quantity, d.status, d.amount_minor,
         d.currency, ts(d.hold_expires_ms), d.session_id, d.payment_intent, d.refund_id,
         d.retaken, ts(d.created_ms), ts(d.updated_ms), e.version, d.units, d.refunded_minor,
         _refunds_json.encode(d.refunds).decode())
        for e in events
        for d in (e.data,)
    ]
    await conn.executemany(
        """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                        amount_minor, currency, hold_expires_at, checkout_session_id,
                                        payment_intent, refund_id, retaken, created_at, updated_at,
                                        version, units, refunded_minor, refunds)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                   $19::jsonb)
           ON CONFLICT (tenant_id, purchase_id) DO UPDATE SET
               status = EXCLUDED.status,
               checkout_session_id = COALESCE(EXCLUDED.checkout_session_id,
                                              offer_purchases.checkout_session_id),
               payment_intent = COALESCE(EXCLUDED.payment_intent, offer_purchases.payment_intent),
               refund_id = COALESCE(EXCLUDED.refund_id, offer_purchases.refund_id),
               retaken = EXCLUDED.retaken, updated_at = EXCLUDED.updated_at,
               version = EXCLUDED.version, units = EXCLUDED.units,
               refunded_minor = EXCLUDED.refunded_minor, refunds = EXCLUDED.refunds
           WHERE offer_purchases.version < EXCLUDED.version""",
        rows,
    )
    await conn.executemany(
        """INSERT INTO offer_purchase_history (tenant_id, purchase_id, version, status, at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        [(r[0], r[1], r[15], r[5], r[14]) for r in rows],
    )
    # one row per refund id, whichever event carried it first (a refund counts once)
    await conn.executemany(
        """INSERT INTO offer_refunds (tenant_id, refund_id, purchase_id, amount_minor, created_at)
           SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
               SELECT 1 FROM offer_purchases WHERE tenant_id = $1 AND purchase_id = $3)
           ON CONFLICT (tenant_id, refund_id) DO NOTHING""",
        [(e.data.tenant_id, refund_id, e.data.purchase_id, amount, ts(e.data.updated_ms))
         for e in events for refund_id, amount in e.data.refunds.items() if amount > 0],
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
