"""Promo codes: definitions upserted by version (from the spec); uses inserted as rows, and
moved to ``promo_code_rolled_back_uses`` when rolled back.

The counters (``times_used``, ``total_bonus_issued``) are never written here: the
triggers of ``0004_promos.sql`` derive them from the use rows. Each statement is
one batch over the run (one json parameter), so a run of 1,000 uses is one INSERT and one
trigger UPDATE per code. Idempotent on its own too: a use is inserted only while
the code's row is older than the event (a replayed ``promo.redeemed`` cannot bring
back a use that a later rollback deleted), and ``ON CONFLICT DO NOTHING``. A use
re-emitted by ``reconcile --repair`` (``resync``: Redis holds it at the code's current
version) is inserted while the row is not newer than that version.
"""

from __future__ import annotations

import asyncpg
import msgspec

from dropgate.engine.events import Event, PromoRedeemed, PromoUseRolledBack
from dropgate.persistence.appliers.base import Applier, PipelineKey, json_rows, raise_versions, saved_upsert, ts
from dropgate.specs.entities import PROMO


async def _bump_versions(
    conn: asyncpg.Connection, events: list[Event[PromoRedeemed]] | list[Event[PromoUseRolledBack]]
) -> None:
    await raise_versions(conn, PROMO, (((e.data.tenant_id, e.data.code), e.version) for e in events))


class _UseRow(msgspec.Struct, gc=False):
    """One use as ``promo_redeemed``'s statement reads it: the event's fields, and the code's
    version the use may be applied below (the event's, one more for a resync)."""

    tenant_id: str
    code: str
    use_id: str
    customer_id: str
    base_amount: int
    bonus_amount: int
    at_ms: int
    version: int


# the run's uses as one json parameter (``json_rows`` says why). A use whose code has no
# row is not filtered out by the join but inserted, so that the statement fails as every
# use of a missing code does (migration 0021's check, SQLSTATE 23503): retried, then
# dead-lettered, never dropped quietly.
_USES_INSERT = """
    INSERT INTO promo_code_uses (tenant_id, code, use_id, customer_id, base_amount, bonus_amount, used_at)
    SELECT u.tenant_id, u.code, u.use_id, u.customer_id, u.base_amount, u.bonus_amount,
           'epoch'::timestamptz + u.at_ms * interval '1 millisecond'
      FROM json_to_recordset($1::json) AS u(tenant_id text, code text, use_id text, customer_id text,
                                            base_amount bigint, bonus_amount bigint, at_ms bigint,
                                            version bigint)
      LEFT JOIN promo_codes p ON p.tenant_id = u.tenant_id AND p.code = u.code
     WHERE p.version IS NULL OR p.version < u.version
    ON CONFLICT DO NOTHING"""


async def promo_redeemed(conn: asyncpg.Connection, events: list[Event[PromoRedeemed]]) -> None:
    rows = [_UseRow(tenant_id=d.tenant_id, code=d.code, use_id=d.use_id, customer_id=d.customer_id,
                    base_amount=d.base_amount, bonus_amount=d.bonus_amount, at_ms=d.at_ms,
                    version=e.version + (1 if d.resync else 0))
            for e in events for d in (e.data,)]
    await conn.execute(_USES_INSERT, json_rows(rows))
    await _bump_versions(conn, events)


async def promo_use_rolled_back(
    conn: asyncpg.Connection, events: list[Event[PromoUseRolledBack]]
) -> None:
    """The use leaves the live uses (the triggers take back its counts) and is kept,
    marked with the rollback's time, for the uses list (migration 0014)."""
    await conn.execute(
        """WITH gone AS (
             DELETE FROM promo_code_uses u
              USING unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                    AS r(tenant_id, code, use_id, at)
              WHERE u.tenant_id = r.tenant_id AND u.code = r.code AND u.use_id = r.use_id
          RETURNING u.tenant_id, u.code, u.use_id, u.customer_id, u.base_amount, u.bonus_amount,
                    u.used_at, r.at)
           INSERT INTO promo_code_rolled_back_uses
                  (tenant_id, code, use_id, customer_id, base_amount, bonus_amount, used_at,
                   rolled_back_at)
           SELECT * FROM gone
           ON CONFLICT DO NOTHING""",
        [e.data.tenant_id for e in events], [e.data.code for e in events],
        [e.data.use_id for e in events], [ts(e.data.at_ms) for e in events],
    )
    await _bump_versions(conn, events)


APPLIERS: dict[str, Applier] = {
    "promo.saved": saved_upsert(PROMO),
    "promo.redeemed": promo_redeemed,
    "promo.use_rolled_back": promo_use_rolled_back,
}

# A use is inserted once (its own key); the code row must exist (``promo.saved`` made it, a
# type never pipelined) and its version guard reads an older committed version at worst,
# below every later use's; the counters (the triggers after the wait) and the version (a later
# statement) come after the wait.
PIPELINED: dict[str, PipelineKey] = {
    "promo.redeemed": lambda e: (e.data.tenant_id, e.data.code, e.data.use_id),
}
