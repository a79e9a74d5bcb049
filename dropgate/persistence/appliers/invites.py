"""Invite codes: definitions upserted by version, uses inserted (the trigger counts them)."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import Event, InviteRedeemed, InviteSaved
from dropgate.persistence.appliers.base import Applier, ts


async def invite_saved(conn: asyncpg.Connection, events: list[Event[InviteSaved]]) -> None:
    await conn.executemany(
        """INSERT INTO invite_codes (tenant_id, code, max_uses, active, expires_at, created_at, version)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (tenant_id, code) DO UPDATE SET
               max_uses = EXCLUDED.max_uses, active = EXCLUDED.active,
               expires_at = EXCLUDED.expires_at, version = EXCLUDED.version
           WHERE invite_codes.version < EXCLUDED.version""",
        [
            (d.tenant_id, d.code, d.max_uses, d.active, ts(d.expires_at_ms), ts(d.created_ms),
             e.version)
            for e in events
            for d in (e.data,)
        ],
    )


async def invite_redeemed(conn: asyncpg.Connection, events: list[Event[InviteRedeemed]]) -> None:
    rows = [(e.data.tenant_id, e.data.code, e.data.user_id, ts(e.data.at_ms)) for e in events]
    await conn.executemany(
        """INSERT INTO invite_code_uses (tenant_id, code, user_id, used_at)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
        rows,
    )
    await conn.executemany(
        """UPDATE invite_codes SET version = $3
           WHERE tenant_id = $1 AND code = $2 AND version < $3""",
        [(e.data.tenant_id, e.data.code, e.version) for e in events],
    )


APPLIERS: dict[str, Applier] = {
    "invite.saved": invite_saved,
    "invite.redeemed": invite_redeemed,
}
