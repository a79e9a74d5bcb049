"""Invite codes."""

from __future__ import annotations

from typing import Annotated

import msgspec

from dropgate.models.common import Id, NonNegative, Struct, Timestamp

MaxUses = Annotated[int, msgspec.Meta(ge=0, le=2_000_000_000, description="0 = unlimited")]


class InviteCreate(Struct, kw_only=True):
    code: Id | None = None
    max_uses: MaxUses
    expires_at: Timestamp | None = None
    active: bool = True


class InvitePatch(Struct, kw_only=True):
    active: bool | None = None
    expires_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    max_uses: MaxUses | None = None


class InviteRedeem(Struct, kw_only=True):
    user_id: Id


class Invite(msgspec.Struct, kw_only=True):
    code: str
    max_uses: NonNegative
    used_count: NonNegative
    active: bool
    expires_at: Timestamp | None
    created_at: Timestamp
    last_used_at: Timestamp | None = None


class InviteRedemption(msgspec.Struct, kw_only=True):
    code: str
    user_id: str
    used_count: int


class InviteEligibility(msgspec.Struct, kw_only=True):
    """Could ``user_id`` redeem now? ``reason``: the redeem refusal code, null when eligible."""

    eligible: bool
    reason: str | None
