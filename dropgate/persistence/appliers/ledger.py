"""Payments, withdrawals, orders and bookings: rows inserted idempotently; balances and
slot counts follow from the rows by trigger (0006_ledger.sql), never written here."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import (
    BookingCanceled,
    BookingCreated,
    Event,
    OrderCreated,
    OrderUpdated,
    PaymentCreated,
    WithdrawalCompleted,
    WithdrawalInitiated,
    WithdrawalRejected,
)
from dropgate.persistence.appliers.base import Applier, ts


async def payment_created(conn: asyncpg.Connection, events: list[Event[PaymentCreated]]) -> None:
    await conn.executemany(
        """INSERT INTO payments (tenant_id, payment_id, amount_minor, currency, reference, epoch,
                                 created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        [(d.tenant_id, d.payment_id, d.amount, d.currency, d.reference, d.epoch, ts(d.at_ms))
         for d in (e.data for e in events)],
    )


async def withdrawal_saved(
    conn: asyncpg.Connection,
    events: list[Event[WithdrawalInitiated | WithdrawalCompleted | WithdrawalRejected]],
) -> None:
    """Every withdrawal event carries the whole withdrawal: upsert by version."""
    await conn.executemany(
        """INSERT INTO withdrawals (tenant_id, withdrawal_id, amount_minor, currency, initiated_by,
                                    approved_by, status, created_at, completed_at, version,
                                    initiator, initiator_key_id, approver, approver_key_id,
                                    rejected_at, reject_reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULLIF($11, ''), NULLIF($12, ''),
                   NULLIF($13, ''), NULLIF($14, ''), $15, NULLIF($16, ''))
           ON CONFLICT (tenant_id, withdrawal_id) DO UPDATE SET
               approved_by = EXCLUDED.approved_by, status = EXCLUDED.status,
               completed_at = EXCLUDED.completed_at, version = EXCLUDED.version,
               approver = EXCLUDED.approver, approver_key_id = EXCLUDED.approver_key_id,
               rejected_at = EXCLUDED.rejected_at, reject_reason = EXCLUDED.reject_reason
           WHERE withdrawals.version < EXCLUDED.version""",
        [(d.tenant_id, d.withdrawal_id, d.amount, d.currency, d.initiated_by, d.approved_by,
          d.status, ts(d.created_ms), ts(d.completed_ms), e.version, d.initiator,
          d.initiator_key_id, d.approver or "", d.approver_key_id or "", ts(d.rejected_ms),
          d.reason or "")
         for e in events for d in (e.data,)],
    )


async def order_saved(conn: asyncpg.Connection, events: list[Event[OrderCreated | OrderUpdated]]) -> None:
    """Both order events carry the whole order: upsert by version (a status change)."""
    await conn.executemany(
        """INSERT INTO orders (tenant_id, order_id, items, total_minor, currency, status, created_at,
                               version, updated_at)
           VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (tenant_id, order_id) DO UPDATE SET
               status = EXCLUDED.status, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
           WHERE orders.version < EXCLUDED.version""",
        [(d.tenant_id, d.order_id, d.items, d.total, d.currency, d.status, ts(d.created_ms), e.version,
          ts(d.updated_ms))
         for e in events for d in (e.data,)],
    )


async def booking_created(conn: asyncpg.Connection, events: list[Event[BookingCreated]]) -> None:
    data = [e.data for e in events]
    await conn.executemany(
        """INSERT INTO booking_slots (tenant_id, resource_id, slot_start, slot_end, capacity)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        sorted({(d.tenant_id, d.resource_id, ts(d.slot_start_ms), ts(d.slot_end_ms), d.capacity)
                for d in data}),
    )
    await conn.executemany(
        """INSERT INTO bookings (tenant_id, booking_id, resource_id, slot_start, slot_end, user_id,
                                 created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        [(d.tenant_id, d.booking_id, d.resource_id, ts(d.slot_start_ms), ts(d.slot_end_ms),
          d.user_id, ts(d.at_ms)) for d in data],
    )


async def booking_canceled(conn: asyncpg.Connection, events: list[Event[BookingCanceled]]) -> None:
    """The row's status; the slot's count follows by trigger (0008_principals.sql)."""
    await conn.executemany(
        """UPDATE bookings SET status = 'canceled', canceled_at = $3
            WHERE tenant_id = $1 AND booking_id = $2 AND status = 'booked'""",
        [(d.tenant_id, d.booking_id, ts(d.canceled_ms)) for d in (e.data for e in events)],
    )


APPLIERS: dict[str, Applier] = {
    "payment.created": payment_created,
    "withdrawal.initiated": withdrawal_saved,
    "withdrawal.completed": withdrawal_saved,
    "withdrawal.rejected": withdrawal_saved,
    "order.created": order_saved,
    "order.updated": order_saved,
    "booking.created": booking_created,
    "booking.canceled": booking_canceled,
}
