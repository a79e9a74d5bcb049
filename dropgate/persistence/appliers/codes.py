"""Campaign code pools: uploads insert rows in bulk, every other event sets rows' state.

``codes.uploaded`` carries the batch's new codes: one ``INSERT ... SELECT FROM
unnest(codes)`` per event (``ON CONFLICT DO NOTHING``: a replay inserts
nothing). ``codes.reserved`` / ``.assigned`` / ``.released`` carry each changed
code's full resulting state, so one ``UPDATE ... FROM unnest(...)`` per run applies
them, the last state per code winning, guarded by the campaign version.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from dropgate.engine.events import (
    CampaignSaved,
    CodesAssigned,
    CodesCommitted,
    CodesDiscarded,
    CodesReleased,
    CodesReserved,
    CodesResynced,
    CodesUploaded,
    Event,
)
from dropgate.persistence.appliers.base import Applier, ts


async def codes_uploaded(conn: asyncpg.Connection, events: list[Event[CodesUploaded]]) -> None:
    """One statement per event, everything but the codes as scalars: sending tenant,
    campaign, type, time and version as 10,000-element arrays too made the insert of a
    million codes about 40% slower (PostgreSQL decodes every array element). A staged
    batch is written with its upload number and stays hidden until the upload commits."""
    for e in events:
        d = e.data
        batch = d.batch()
        if not batch:
            continue
        if d.staged is not None:
            await conn.execute(
                """INSERT INTO campaign_pending_uploads (tenant_id, campaign_id, upload)
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
                d.tenant_id, d.campaign_id, d.staged)
            await conn.execute(
                """INSERT INTO campaign_codes
                       (tenant_id, campaign_id, type, code, uploaded_at, version, upload)
                   SELECT $1, $2, $3, u.code, $5, $6, $7 FROM unnest($4::text[]) AS u (code)
                   ON CONFLICT (tenant_id, campaign_id, code) DO NOTHING""",
                d.tenant_id, d.campaign_id, d.type, batch, ts(d.at_ms), e.version, d.staged)
            continue
        created_ms = d.created_ms if d.created_ms is not None else d.at_ms
        await _campaign_type(conn, d.tenant_id, d.campaign_id, d.type, created_ms)
        await conn.execute(
            """INSERT INTO campaign_codes
                   (tenant_id, campaign_id, type, code, uploaded_at, version)
               SELECT $1, $2, $3, u.code, $5, $6 FROM unnest($4::text[]) AS u (code)
               ON CONFLICT (tenant_id, campaign_id, code) DO NOTHING""",
            d.tenant_id, d.campaign_id, d.type, batch, ts(d.at_ms), e.version,
        )


async def _campaign_type(conn: asyncpg.Connection, tenant_id: str, campaign_id: str, type_: str,
                         created_ms: int) -> None:
    """An upload creates its campaign on the fly (created when Redis says: its meta's
    created_ms, which events before that field lack: then the event's time) and adds
    its type to it."""
    await conn.execute(
        """INSERT INTO campaigns (tenant_id, campaign_id, types, created_at)
           VALUES ($1, $2, ARRAY[$3::text], $4)
           ON CONFLICT (tenant_id, campaign_id) DO UPDATE
               SET types = array(SELECT DISTINCT unnest(campaigns.types || EXCLUDED.types) ORDER BY 1)
             WHERE NOT ($3 = ANY (campaigns.types))""",
        tenant_id, campaign_id, type_, ts(created_ms))


async def codes_committed(conn: asyncpg.Connection, events: list[Event[CodesCommitted]]) -> None:
    """A staged upload goes live, one type per event: its rows were written batch by
    batch. The last type's event deletes the upload's row in campaign_pending_uploads,
    which makes them all visible (no rewrite of a million rows); an earlier type is
    noted there as committed (live in Redis: listed, kept by a discard of the rest).
    A campaign this creates gets its meta's created_ms (the first batch's time)."""
    for e in events:
        d = e.data
        created_ms = d.created_ms if d.created_ms is not None else d.at_ms
        await _campaign_type(conn, d.tenant_id, d.campaign_id, d.type, created_ms)
        if d.last:
            await conn.execute(
                """DELETE FROM campaign_pending_uploads
                    WHERE tenant_id = $1 AND campaign_id = $2 AND upload = $3""",
                d.tenant_id, d.campaign_id, d.upload)
        else:
            await conn.execute(
                """UPDATE campaign_pending_uploads
                      SET committed_types = array_append(committed_types, $4::text)
                    WHERE tenant_id = $1 AND campaign_id = $2 AND upload = $3
                      AND NOT ($4 = ANY (committed_types))""",
                d.tenant_id, d.campaign_id, d.upload, d.type)


async def codes_discarded(conn: asyncpg.Connection, events: list[Event[CodesDiscarded]]) -> None:
    for e in events:
        await discard_uploads(conn, e.data.tenant_id, e.data.campaign_id, [e.data.upload])


async def discard_uploads(conn: asyncpg.Connection, tenant_id: str, campaign_id: str,
                          uploads: list[int]) -> None:
    """A refused or abandoned upload's rows go, as its records went in Redis (untouched
    since: available, never reserved), but for those of a type it already committed
    (a server killed, or a commit failed, between the commits of two types): that type
    is live in Redis and stays. Only an upload still pending has rows to lose: with no
    pending row it was discarded already, or committed, and nothing is deleted. Also
    what a restore does to the uploads it leaves out of the pool (``reconcile.codes``)."""
    await conn.execute(
        """DELETE FROM campaign_codes AS c
            USING campaign_pending_uploads AS p
            WHERE p.tenant_id = $1 AND p.campaign_id = $2 AND p.upload = ANY($3::bigint[])
              AND c.tenant_id = $1 AND c.campaign_id = $2 AND c.upload = p.upload
              AND c.status = 'available' AND c.reserve_id IS NULL
              AND NOT (c.type = ANY (p.committed_types))""",
        tenant_id, campaign_id, uploads)
    await conn.execute(
        """DELETE FROM campaign_pending_uploads
            WHERE tenant_id = $1 AND campaign_id = $2 AND upload = ANY($3::bigint[])""",
        tenant_id, campaign_id, uploads)


async def campaign_saved(conn: asyncpg.Connection, events: list[Event[CampaignSaved]]) -> None:
    await conn.executemany(
        """INSERT INTO campaigns (tenant_id, campaign_id, name, types, reservation_ttl_s,
                                  low_watermark, created_at, version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (tenant_id, campaign_id) DO UPDATE SET
               name = EXCLUDED.name,
               types = array(SELECT DISTINCT unnest(campaigns.types || EXCLUDED.types) ORDER BY 1),
               reservation_ttl_s = EXCLUDED.reservation_ttl_s,
               low_watermark = EXCLUDED.low_watermark, version = EXCLUDED.version
           WHERE campaigns.version < EXCLUDED.version""",
        [(d.tenant_id, d.campaign_id, d.name, d.types, d.reservation_ttl_s, d.low_watermark,
          ts(d.created_ms), e.version) for e in events for d in (e.data,)])


async def codes_changed(
    conn: asyncpg.Connection, events: list[Event[CodesReserved | CodesAssigned | CodesReleased]]
) -> None:
    """Rows ``[code, status, reserve_id, reserved_at_ms, expires_at_ms, assigned_at_ms]``."""
    latest: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for e in events:
        d = e.data
        to = d.assigned_to if isinstance(d, CodesAssigned) else None
        for code, status, reserve_id, reserved_ms, expires_ms, assigned_ms in d.rows:
            latest[(d.tenant_id, d.campaign_id, code)] = (
                status, reserve_id, ts(reserved_ms), ts(expires_ms), ts(assigned_ms), e.version, to)
    if not latest:
        return
    keys = list(latest)
    values = [latest[k] for k in keys]
    await conn.execute(
        """UPDATE campaign_codes AS c
              SET status = u.status, reserve_id = u.reserve_id, reserved_at = u.reserved_at,
                  expires_at = u.expires_at, assigned_at = u.assigned_at,
                  assigned_to = COALESCE(u.assigned_to, c.assigned_to),
                  version = u.version, saved_at = now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::bigint[],
                         $10::text[])
                  AS u (tenant_id, campaign_id, code, status, reserve_id, reserved_at,
                        expires_at, assigned_at, version, assigned_to)
            WHERE c.tenant_id = u.tenant_id AND c.campaign_id = u.campaign_id
              AND c.code = u.code AND c.version < u.version""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
        [v[0] for v in values], [v[1] for v in values], [v[2] for v in values],
        [v[3] for v in values], [v[4] for v in values], [v[5] for v in values],
        [v[6] for v in values],
    )


async def codes_resynced(conn: asyncpg.Connection, events: list[Event[CodesResynced]]) -> None:
    """``reconcile --repair`` re-emitted codes from Redis (rows as ``codes_changed``'s,
    plus the type): inserted when missing (uploaded_at: the repair time), else set to
    that state unless the row is newer than the campaign version of the event."""
    latest: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for e in events:
        d = e.data
        for code, status, reserve_id, reserved_ms, expires_ms, assigned_ms, type_ in d.rows:
            latest[(d.tenant_id, d.campaign_id, code)] = (
                type_, status, reserve_id, ts(reserved_ms), ts(expires_ms), ts(assigned_ms), ts(d.at_ms),
                e.version)
    if not latest:
        return
    keys = list(latest)
    values = [latest[k] for k in keys]
    await conn.execute(
        """INSERT INTO campaign_codes AS c (tenant_id, campaign_id, code, type, status, reserve_id,
                                           reserved_at, expires_at, assigned_at, uploaded_at, version)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
                                $11::bigint[])
           ON CONFLICT (tenant_id, campaign_id, code) DO UPDATE SET
               status = EXCLUDED.status, reserve_id = EXCLUDED.reserve_id,
               reserved_at = EXCLUDED.reserved_at, expires_at = EXCLUDED.expires_at,
               assigned_at = EXCLUDED.assigned_at, version = EXCLUDED.version, saved_at = now()
           WHERE c.version <= EXCLUDED.version""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
        *([v[i] for v in values] for i in range(8)),
    )


APPLIERS: dict[str, Applier] = {
    "codes.resynced": codes_resynced,
    "codes.uploaded": codes_uploaded,
    "codes.reserved": codes_changed,
    "codes.assigned": codes_changed,
    "codes.released": codes_changed,
    "codes.committed": codes_committed,
    "codes.discarded": codes_discarded,
    "campaign.saved": campaign_saved,
}
