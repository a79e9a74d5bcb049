"""Campaigns as things (v1.1): create, read (with live counts per type), change; one code's
state; a streamed CSV export of a campaign's codes of any size."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dropgate.engine.codes import STATUSES, CampaignState
from dropgate.errors import AlreadyExists, NotFound, UnknownType, ValidationError
from dropgate.http.connections import SERVER_NAME
from dropgate.http.listspecs import NOT_PENDING
from dropgate.http.middleware import REQUEST_ID
from dropgate.http.routing import ApiRoutes, Call
from dropgate.ids import ms_to_dt
from dropgate.models.codes import Campaign, CampaignCreate, CampaignPatch, CodeInfo, TypeCounts

routes = ApiRoutes("campaigns")

EXPORT_HEADER = "code,type,status,reserve_id,reserved_at,assigned_at,assigned_to"
_RFC3339 = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
_EXPORT_STATUS = {
    "available": "(status = 'available' OR (status = 'reserved' AND expires_at <= now()))",
    "reserved": "(status = 'reserved' AND expires_at > now())",
    "assigned": "status = 'assigned'",
}


async def _view(call: Call[Any], campaign_id: str, state: CampaignState) -> Campaign:
    counts: dict[str, TypeCounts] = {}
    for t in state.types:
        c = await call.runtime.codes.count(call.tenant_id, campaign_id, t)
        counts[t] = TypeCounts(available=c.available, reserved=c.reserved, assigned=c.assigned)
    created = ms_to_dt(state.created_ms)
    assert created is not None
    return Campaign(campaign_id=campaign_id, name=state.name, types=state.types,
                    reservation_ttl_s=state.ttl_s, low_watermark=state.low_watermark,
                    created_at=created, counts=counts)


@routes.post("/v1/campaigns", body=CampaignCreate, response=Campaign, status=201,
             errors=[AlreadyExists])
async def create_campaign(call: Call[CampaignCreate]) -> Campaign:
    """Create a campaign with its code types, reservation TTL and low watermark."""
    b = call.body
    state = await call.runtime.codes.save_campaign(
        call.tenant_id, b.campaign_id, create=True, name=b.name, types=b.types,
        ttl_s=b.reservation_ttl_s, low_watermark=b.low_watermark)
    return await _view(call, b.campaign_id, state)


@routes.get("/v1/campaigns/{campaign_id}", response=Campaign, errors=[NotFound])
async def get_campaign(call: Call[None]) -> Campaign:
    """A campaign with live counts per type."""
    campaign_id = call.path_id("campaign_id")
    return await _view(call, campaign_id, await call.runtime.codes.campaign(call.tenant_id, campaign_id))


@routes.patch("/v1/campaigns/{campaign_id}", body=CampaignPatch, response=Campaign,
              errors=[NotFound])
async def update_campaign(call: Call[CampaignPatch]) -> Campaign:
    """Change a campaign's name, TTL or watermark, or add types (never remove one)."""
    campaign_id = call.path_id("campaign_id")
    b = call.body
    state = await call.runtime.codes.save_campaign(
        call.tenant_id, campaign_id, create=False, name=b.name, types=b.types or (),
        ttl_s=b.reservation_ttl_s, low_watermark=b.low_watermark)
    return await _view(call, campaign_id, state)


@routes.get("/v1/campaigns/{campaign_id}/codes/export", response=None,
            response_content_type="text/csv", errors=[NotFound, UnknownType],
            query=[("status", "available, reserved or assigned", False),
                   ("type", "one code type", False)])
async def export_codes(call: Call[None]) -> web.StreamResponse:
    """A campaign's codes as CSV, streamed from PostgreSQL (COPY) in flat memory."""
    campaign_id = call.path_id("campaign_id")
    code_type = call.query_type()
    status = call.request.query.get("status")
    if status is not None and status not in STATUSES:
        raise ValidationError("status must be available, reserved or assigned.",
                              details={"field": "status"})
    await call.runtime.codes.require_campaign(call.tenant_id, campaign_id, code_type)
    where = ["tenant_id = $1", "campaign_id = $2", NOT_PENDING]
    args: list[str] = [call.tenant_id, campaign_id]
    if code_type is not None:
        args.append(code_type)
        where.append(f"type = ${len(args)}")
    if status is not None:
        where.append(_EXPORT_STATUS[status])
    query = (
        "SELECT code, type, CASE WHEN status = 'reserved' AND expires_at <= now() "
        "THEN 'available' ELSE status END, reserve_id, "
        f"to_char(reserved_at AT TIME ZONE 'UTC', {_RFC3339}), "
        f"to_char(assigned_at AT TIME ZONE 'UTC', {_RFC3339}), assigned_to "
        f"FROM campaign_codes WHERE {' AND '.join(where)} ORDER BY code")
    response = web.StreamResponse(headers={
        "X-Request-Id": call.request.get(REQUEST_ID, ""), "Server": SERVER_NAME,
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{campaign_id}-codes.csv"'})
    await response.prepare(call.request)
    await response.write((EXPORT_HEADER + "\r\n").encode())

    async def out(chunk: bytes) -> None:
        await response.write(chunk)  # waits for the socket: backpressure, flat memory

    async with call.runtime.pool.acquire() as conn:
        await conn.copy_from_query(query, *args, output=out, format="csv")
    await response.write_eof()
    return response


@routes.get("/v1/campaigns/{campaign_id}/codes/{code}", response=CodeInfo,
            errors=[NotFound])
async def get_code(call: Call[None]) -> CodeInfo:
    """One code of a campaign, live: its status, reservation and whom it was assigned to."""
    campaign_id = call.path_id("campaign_id")
    await call.runtime.codes.require_campaign(call.tenant_id, campaign_id)
    c = await call.runtime.codes.code(call.tenant_id, campaign_id, call.path_id("code"))
    return CodeInfo(code=c.code, type=c.type, status=c.status, reserve_id=c.reserve_id,
                    reserved_at=ms_to_dt(c.reserved_at_ms), assigned_at=ms_to_dt(c.assigned_at_ms),
                    assigned_to=c.assigned_to)
