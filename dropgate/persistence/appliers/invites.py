"""Invite codes: definitions upserted by version (from the spec), uses inserted (the trigger counts them)."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import Event, InviteRedeemed
from dropgate.persistence.appliers.base import Applier, saved_upsert, ts
from dropgate.specs.entities import INVITE


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
    "invite.saved": saved_upsert(INVITE),
    "invite.redeemed": invite_redeemed,
}
