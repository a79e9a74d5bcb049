"""Invite codes: a user uses a code at most once, and uses never exceed ``max_uses``.

Script <-> method: ``invite_create-2.lua`` <-> ``Invites.create``,
``invite_update-2.lua`` <-> ``Invites.update``, ``invite_redeem-5.lua`` <->
``Invites.redeem`` and ``Invites.redeem_keyed`` (coalesced by the engine's ``Batcher``:
concurrent redemptions of one code share a script call, each still decided, refused,
logged and, under an Idempotency-Key, recorded on its own).
"""

from __future__ import annotations

import secrets

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.engine.idempotency import (
    Answered,
    KeyedAnswer,
    RecordKey,
    answered,
    record_times,
    records_arg,
)
from dropgate.engine.redemptions import Redemptions
from dropgate.engine.scripts import keep_arg, patch_arg
from dropgate.errors import error_for

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class InviteState(msgspec.Struct, kw_only=True):
    tenant_id: str
    code: str
    max_uses: int
    used_count: int
    active: bool
    expires_at_ms: int | None = None
    created_ms: int
    version: int
    last_used_ms: int | None = None


class Invites:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        # one script call per batch of a code's redemptions: under a crowd, one hot code
        # costs one Redis round trip per batch; a lone request still leaves at once
        self.redemptions: Redemptions[_Ask, int | Answered[int]] = Redemptions(
            self._redeem_batch, name="invite_redemptions")
        self._idem_ttl_ms, self._idem_stale_ms = record_times(ctx)

    async def close(self) -> None:
        """Let queued redemptions finish (briefly), then stop their drains."""
        await self.redemptions.close()

    async def create(
        self,
        tenant_id: str,
        *,
        code: str | None,
        max_uses: int,
        expires_at_ms: int | None,
        active: bool,
    ) -> InviteState:
        code = code or "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "invite_create",
            [tk.log, tk.invite(code)],
            [self._ctx.backlog_bound, tenant_id, code, max_uses,
             "" if expires_at_ms is None else expires_at_ms, "1" if active else "0"],
            type=InviteState,
        )

    async def update(
        self,
        tenant_id: str,
        code: str,
        *,
        active: bool | None = None,
        expires_at_ms: int | msgspec.UnsetType | None = msgspec.UNSET,
        max_uses: int | None = None,
    ) -> InviteState:
        """Fields left ``None`` (``UNSET`` for expiry, where ``None`` clears it) stay."""
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "invite_update",
            [tk.log, tk.invite(code)],
            [self._ctx.backlog_bound, tenant_id, code, keep_arg(active), patch_arg(expires_at_ms),
             keep_arg(max_uses)],
            type=InviteState,
        )

    async def get(self, tenant_id: str, code: str) -> InviteState:
        key = self._ctx.keys.tenant(tenant_id).invite(code)
        return await self._ctx.read_hash(key, InviteState, "No such invite code.", {"code": code})

    async def eligibility(self, tenant_id: str, code: str, *, user_id: str) -> str | None:
        """The refusal code a redeem by ``user_id`` would get now, or None; changes nothing."""
        tk = self._ctx.keys.tenant(tenant_id)
        result = await self._ctx.scripts.call(
            "invite_check", [tk.invite(code), tk.invite_users(code)], [code, user_id], type=_Check)
        return result.reason

    async def redeem(self, tenant_id: str, code: str, *, user_id: str) -> int:
        """Return the code's ``used_count`` after this use."""
        self._ctx.keys.tenant(tenant_id).invite(code)  # a bad id is this caller's 400 alone
        used = await self.redemptions.submit(tenant_id, code, (user_id, None))
        assert isinstance(used, int)
        return used  # its own refusal was raised, to this caller alone

    async def redeem_keyed(self, tenant_id: str, code: str, *, user_id: str,
                           record: RecordKey) -> Answered[int]:
        """``redeem`` under an Idempotency-Key: a repeat gets the first answer, filed in
        the same script call as the use itself."""
        self._ctx.keys.tenant(tenant_id).invite(code)
        outcome = await self.redemptions.submit(tenant_id, code, (user_id, record))
        assert isinstance(outcome, Answered)
        return outcome

    async def _redeem_batch(self, key: tuple[str, str], asks: list[_Ask]
                            ) -> list[int | Answered[int] | BaseException]:
        """One script call deciding a batch of one code's redemptions, each on its own."""
        tenant_id, code = key
        tk = self._ctx.keys.tenant(tenant_id)
        answers = await self._ctx.scripts.call(
            "invite_redeem",
            [tk.log, tk.invite(code), tk.invite_users(code), tk.offer_idempotency(),
             tk.offer_idempotency_expiry()],
            [self._ctx.backlog_bound, tenant_id, code, _encode_users([user for user, _ in asks]),
             self._idem_ttl_ms, self._idem_stale_ms,
             records_arg([record for _, record in asks])],
            type=list[_Answer],
        )
        return [_outcome(a) if record is None else answered(a, a.used_count)
                for (_, record), a in zip(asks, answers, strict=True)]


_Ask = tuple[str, RecordKey | None]  # (user id, its record under a key)


class _Answer(KeyedAnswer):
    """One request's entry in a batch answer: its count, or its own refusal."""

    used_count: int = 0


def _outcome(a: _Answer) -> int | BaseException:
    return a.used_count if a.err is None else error_for(a.err, details=a.details or None)


_encode_users = msgspec.json.Encoder().encode


class _Check(msgspec.Struct):
    reason: str | None


class _Redeemed(msgspec.Struct):
    used_count: int

