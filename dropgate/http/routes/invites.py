"""Invite codes (tenant)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from dropgate.engine.invites import InviteState
from dropgate.errors import (
    AlreadyExists,
    AlreadyUsed,
    Conflict,
    Exhausted,
    Expired,
    Inactive,
    NotFound,
)
from dropgate.http.idempotency import request_record
from dropgate.http.routing import ApiRoutes, Call
from dropgate.ids import dt_to_ms, ms_to_dt
from dropgate.models.invites import (
    Invite,
    InviteCreate,
    InviteEligibility,
    InvitePatch,
    InviteRedeem,
    InviteRedemption,
)

routes = ApiRoutes("invites")


def invite_view(state: InviteState) -> Invite:
    created = ms_to_dt(state.created_ms)
    assert created is not None
    return Invite(code=state.code, max_uses=state.max_uses, used_count=state.used_count,
                  active=state.active, expires_at=ms_to_dt(state.expires_at_ms),
                  created_at=created, last_used_at=ms_to_dt(state.last_used_ms))


@routes.post("/v1/invites", body=InviteCreate, response=Invite, status=201,
             errors=[AlreadyExists])
async def create_invite(call: Call[InviteCreate]) -> Invite:
    """Create an invite code (a code is generated when none is given)."""
    b = call.body
    state = await call.runtime.invites.create(
        call.tenant_id, code=b.code, max_uses=b.max_uses, expires_at_ms=dt_to_ms(b.expires_at, "expires_at"),
        active=b.active,
    )
    return invite_view(state)


@routes.get("/v1/invites/{code}", response=Invite, errors=[NotFound])
async def get_invite(call: Call[None]) -> Invite:
    """An invite code with its use count."""
    return invite_view(await call.runtime.invites.get(call.tenant_id, call.path_id("code")))


@routes.patch("/v1/invites/{code}", body=InvitePatch, response=Invite, errors=[NotFound, Conflict])
async def update_invite(call: Call[InvitePatch]) -> Invite:
    """Change active, expires_at (null clears) or max_uses (never below used_count)."""
    b = call.body
    state = await call.runtime.invites.update(
        call.tenant_id, call.path_id("code"), active=b.active,
        expires_at_ms=b.expires_at if b.expires_at is msgspec.UNSET else dt_to_ms(b.expires_at, "expires_at"),
        max_uses=b.max_uses,
    )
    return invite_view(state)


@routes.post("/v1/invites/{code}/redeem", body=InviteRedeem, response=InviteRedemption,
             errors=[NotFound, Inactive, Expired, AlreadyUsed, Exhausted], keys_in_handler=True, hot=True)
async def redeem_invite(call: Call[InviteRedeem]) -> InviteRedemption | web.StreamResponse:
    """Use the code for one user (at most once per user, never past max_uses)."""
    code, user_id = call.path_id("code"), call.body.user_id
    record = request_record(call.request, call.tenant_id, call.raw)
    if record is None:
        used = await call.runtime.invites.redeem(call.tenant_id, code, user_id=user_id)
        return InviteRedemption(code=code, user_id=user_id, used_count=used)
    outcome = await call.runtime.invites.redeem_keyed(call.tenant_id, code, user_id=user_id, record=record)
    return call.keyed(outcome, lambda used: InviteRedemption(code=code, user_id=user_id, used_count=used))


@routes.get("/v1/invites/{code}/eligibility", response=InviteEligibility, errors=[NotFound],
            query=[("user_id", "the user who would redeem", True)])
async def invite_eligibility(call: Call[None]) -> InviteEligibility:
    """Could this user redeem the code now? Changes nothing (reason: the refusal code)."""
    user_id = call.query_id("user_id", required=True)
    assert user_id is not None
    reason = await call.runtime.invites.eligibility(call.tenant_id, call.path_id("code"),
                                                     user_id=user_id)
    return InviteEligibility(eligible=reason is None, reason=reason)
