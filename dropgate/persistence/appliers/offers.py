"""Offers: definitions upserted by version (from the spec); purchases upserted by version with one
history row per version (the trigger derives offers.reserved/sold from them);
webhook events inserted once."""

from __future__ import annotations

import asyncpg
import msgspec

from dropgate.engine.events import Event, OfferPurchase, OfferWebhook
from dropgate.persistence.appliers.base import Applier, columns, raise_versions, rounds, saved_upsert, ts
from dropgate.specs.entities import OFFER

_refunds_json = msgspec.json.Encoder(order="sorted")


_PURCHASE_UPSERT = """
    INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                 amount_minor, currency, hold_expires_at, checkout_session_id,
                                 payment_intent, refund_id, retaken, created_at, updated_at,
                                 version, units, refunded_minor, refunds)
    SELECT tenant_id, purchase_id, offer_id, user_id, quantity, status, amount_minor, currency,
           hold_expires_at, checkout_session_id, payment_intent, refund_id, retaken, created_at,
           updated_at, version, units, refunded_minor, refunds::jsonb
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::text[],
                  $7::bigint[], $8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[],
                  $13::boolean[], $14::timestamptz[], $15::timestamptz[], $16::bigint[], $17::text[],
                  $18::bigint[], $19::text[])
           AS u (tenant_id, purchase_id, offer_id, user_id, quantity, status, amount_minor,
                 currency, hold_expires_at, checkout_session_id, payment_intent, refund_id, retaken,
                 created_at, updated_at, version, units, refunded_minor, refunds)
    ON CONFLICT (tenant_id, purchase_id) DO UPDATE SET
        status = EXCLUDED.status,
        checkout_session_id = COALESCE(EXCLUDED.checkout_session_id,
                                       offer_purchases.checkout_session_id),
        payment_intent = COALESCE(EXCLUDED.payment_intent, offer_purchases.payment_intent),
        refund_id = COALESCE(EXCLUDED.refund_id, offer_purchases.refund_id),
        retaken = EXCLUDED.retaken, updated_at = EXCLUDED.updated_at,
        version = EXCLUDED.version, units = EXCLUDED.units,
        refunded_minor = EXCLUDED.refunded_minor, refunds = EXCLUDED.refunds
    WHERE offer_purchases.version < EXCLUDED.version"""


def _purchase_row(e: Event[OfferPurchase]) -> tuple[object, ...]:
    d = e.data
    return (d.tenant_id, d.purchase_id, d.offer_id, d.user_id, d.quantity, d.status, d.amount_minor,
            d.currency, ts(d.hold_expires_ms), d.session_id, d.payment_intent, d.refund_id,
            d.retaken, ts(d.created_ms), ts(d.updated_ms), e.version, d.units, d.refunded_minor,
            _refunds_json.encode(d.refunds).decode())


async def offer_purchase(conn: asyncpg.Connection, events: list[Event[OfferPurchase]]) -> None:
    """A run of purchase versions in a few statements whatever its length: one upsert per
    round (``rounds``: a purchase seen twice in the run goes in two statements, in order),
    one insert of every history row, one version bump per offer touched."""
    for batch in rounds(events, key=lambda e: (e.data.tenant_id, e.data.purchase_id)):
        await conn.execute(_PURCHASE_UPSERT, *columns([_purchase_row(e) for e in batch], 19))
    await conn.execute(
        """INSERT INTO offer_purchase_history (tenant_id, purchase_id, version, status, at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[])
           ON CONFLICT DO NOTHING""",
        *columns([(e.data.tenant_id, e.data.purchase_id, e.version, e.data.status, ts(e.data.updated_ms))
                  for e in events], 5))
    # one row per refund id, whichever event carried it first (a refund counts once)
    refunds = [(e.data.tenant_id, refund_id, e.data.purchase_id, amount, ts(e.data.updated_ms))
               for e in events for refund_id, amount in e.data.refunds.items() if amount > 0]
    if refunds:
        await conn.executemany(
            """INSERT INTO offer_refunds (tenant_id, refund_id, purchase_id, amount_minor, created_at)
               SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                   SELECT 1 FROM offer_purchases WHERE tenant_id = $1 AND purchase_id = $3)
               ON CONFLICT (tenant_id, refund_id) DO NOTHING""",
            refunds)
    # 0: the change did not bump the offer's version
    await raise_versions(conn, OFFER, (((e.data.tenant_id, e.data.offer_id), e.data.offer_version)
                                       for e in events if e.data.offer_version))


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
