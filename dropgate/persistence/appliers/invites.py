"""Invite codes: definitions upserted by version (from the spec), uses inserted (the trigger counts them)."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import Event, InviteRedeemed
from dropgate.persistence.appliers.base import Applier, PipelineKey, columns, raise_versions, saved_upsert, ts
from dropgate.specs.entities import INVITE


async def invite_redeemed(conn: asyncpg.Connection, events: list[Event[InviteRedeemed]]) -> None:
    """Two statements per run, whatever its length: the uses (a replayed one conflicts
    and is skipped), then each code's version to the run's highest."""
    await conn.execute(
        """INSERT INTO invite_code_uses (tenant_id, code, user_id, used_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
           ON CONFLICT DO NOTHING""",
        *columns([(e.data.tenant_id, e.data.code, e.data.user_id, ts(e.data.at_ms)) for e in events], 4))
    await raise_versions(conn, INVITE, (((e.data.tenant_id, e.data.code), e.version) for e in events))


APPLIERS: dict[str, Applier] = {
    "invite.saved": saved_upsert(INVITE),
    "invite.redeemed": invite_redeemed,
}

# A use is inserted once (``ON CONFLICT``); the counter (the trigger after the wait) and the
# version (a later statement) come after the wait.
PIPELINED: dict[str, PipelineKey] = {
    "invite.redeemed": lambda e: (e.data.tenant_id, e.data.code, e.data.user_id),
}
