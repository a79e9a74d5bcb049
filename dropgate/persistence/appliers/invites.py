"""Invite codes: definitions upserted by version (from the spec), uses inserted (the trigger counts them)."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import Event, InviteRedeemed
from dropgate.persistence.appliers.base import Applier, PipelineKey, raise_versions, raw_rows, saved_upsert
from dropgate.specs.entities import INVITE

# the run's uses as one json parameter, the bytes the script wrote (``raw_rows`` says why)
_USES_INSERT = """
    INSERT INTO invite_code_uses (tenant_id, code, user_id, used_at)
    SELECT tenant_id, code, user_id, 'epoch'::timestamptz + at_ms * interval '1 millisecond'
      FROM json_to_recordset($1::json) AS r (tenant_id text, code text, user_id text, at_ms bigint)
    ON CONFLICT DO NOTHING"""


async def invite_redeemed(conn: asyncpg.Connection, events: list[Event[InviteRedeemed]]) -> None:
    """Two statements per run, whatever its length: the uses (a replayed one conflicts
    and is skipped), then each code's version to the run's highest."""
    await conn.execute(_USES_INSERT, raw_rows(events))
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
