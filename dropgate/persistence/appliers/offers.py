"""Offers: definitions upserted by version (from the spec); purchases upserted by version with one
history row per version after the first (the purchase's row holds its first: migration 0023; the
trigger derives offers.reserved/sold from them); webhook events inserted once."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import Event, OfferPurchase, OfferWebhook
from dropgate.persistence.appliers.base import Applier, PipelineKey, raise_versions, raw_rows, rounds, saved_upsert, ts
from dropgate.specs.entities import OFFER

# One statement per round: the run's records go as ONE json parameter, the bytes the scripts
# wrote (``raw_rows``), unpacked by ``json_to_recordset`` in PostgreSQL. A record leaves out
# what a hold has not got yet (retaken, refunds, ...): NULL there, given the struct's default
# (``PurchaseRecord``) here. The same rows give the purchases'
# upsert and their history rows: the history has no key to the purchases (migration 0017),
# so neither waits on the other. A version 1 is a new hold (pending, at its created time),
# which its purchase row already says: offer_purchase_history, a view since 0023, shows it
# from there, so a crowd's purchases write no history rows at all.
_PURCHASES_APPLY = """
    WITH u AS MATERIALIZED (
        SELECT * FROM json_to_recordset($1::json) AS r (
            tenant_id text, purchase_id text, offer_id text, user_id text, quantity integer,
            status text, amount_minor bigint, currency text, hold_expires_ms bigint,
            session_id text, payment_intent text, refund_id text, retaken boolean,
            created_ms bigint, updated_ms bigint, version bigint, units text,
            refunded_minor bigint, refunds jsonb)
    ), history AS (
        INSERT INTO offer_purchase_changes (tenant_id, purchase_id, version, status, at)
        SELECT tenant_id, purchase_id, version, status,
               'epoch'::timestamptz + updated_ms * interval '1 millisecond'
          FROM u
         WHERE version > 1
        ON CONFLICT DO NOTHING
    )
    INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                 amount_minor, currency, hold_expires_at, checkout_session_id,
                                 payment_intent, refund_id, retaken, created_at, updated_at,
                                 version, units, refunded_minor, refunds)
    SELECT tenant_id, purchase_id, offer_id, user_id, quantity, status, amount_minor, currency,
           'epoch'::timestamptz + hold_expires_ms * interval '1 millisecond', session_id,
           payment_intent, refund_id, COALESCE(retaken, false),
           'epoch'::timestamptz + created_ms * interval '1 millisecond',
           'epoch'::timestamptz + updated_ms * interval '1 millisecond',
           version, COALESCE(units, 'none'), COALESCE(refunded_minor, 0), COALESCE(refunds, '{}')
      FROM u
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


async def offer_purchase(conn: asyncpg.Connection, events: list[Event[OfferPurchase]]) -> None:
    """A run of purchase versions in a few statements whatever its length: one per round
    (``rounds``: a purchase seen twice in the run goes in two statements, in order), each
    upserting its purchases and inserting their history rows; one version bump per offer
    touched."""
    for batch in rounds(events, key=lambda e: (e.data.tenant_id, e.data.purchase_id)):
        await conn.execute(_PURCHASES_APPLY, raw_rows(batch))
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

# The upsert writes its own purchases and their history rows before the wait; the offer's
# counters (the triggers after it), its existence check (a key-share lock) and its version (a
# later statement) come after it, and a refund checks its own purchase.
PIPELINED: dict[str, PipelineKey] = {
    "offer.purchase": lambda e: (e.data.tenant_id, e.data.purchase_id),
}
