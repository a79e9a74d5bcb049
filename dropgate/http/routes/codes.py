"""Campaign code pools (tenant): upload (S3 or a streamed text/csv body), reserve,
assign, release, counts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import msgspec
from aiohttp import BodyPartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from dropgate.engine.codes import STATUSES, Reservation
from dropgate.engine.codestore import s3_chunks, type_of_key
from dropgate.errors import (
    Conflict,
    InsufficientCodes,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    UnknownType,
    ValidationError,
)
from dropgate.http.idempotency import request_record
from dropgate.http.routing import ApiRoutes, Call, validation_error
from dropgate.ids import ms_to_dt
from dropgate.models.codes import (
    CodeCounts,
    CodesChange,
    CodesChangeResult,
    CodeUploadFile,
    CodeUploadResult,
    ReservationRequest,
    ReservationResult,
)

routes = ApiRoutes("codes")

_file_decoder = msgspec.json.Decoder(CodeUploadFile)
_CSV_TYPES = ("text/csv", "text/plain")
_STREAM_CHUNK = 256 * 1024
_UPLOAD_CONTENT = {
    "application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["file_key"],
        "properties": {"file_key": {"type": "string", "description":
                                    "S3 key codes/{campaign_id}/{type}/<file> in DROPGATE_S3_BUCKET"}},
    }},
    "text/csv": {"schema": {"type": "string", "description":
                            "CSV (RFC 4180): a code per row, or code,type rows under a "
                            "`code,type` header; needs ?type= without a type column "
                            "(streamed, up to DROPGATE_CSV_BODY_LIMIT_BYTES)"}},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "the CSV file, as with text/csv"}}}},
}


async def _limited(stream: StreamReader, limit_bytes: int) -> AsyncGenerator[bytes, None]:
    """The body as it arrives, refused with 413 past the limit (chunked bodies too)."""
    seen = 0
    async for chunk in stream.iter_chunked(_STREAM_CHUNK):
        seen += len(chunk)
        if seen > limit_bytes:
            raise PayloadTooLarge(f"The CSV body is over {limit_bytes} bytes.",
                                  details={"limit_bytes": limit_bytes})
        yield chunk


async def _file_part(request: web.Request, limit_bytes: int) -> AsyncGenerator[bytes, None]:
    """The ``file`` field of a multipart/form-data body (curl -F file=@codes.csv), streamed."""
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise ValidationError("The multipart body has no field `file`.",
                                      details={"field": "file"})
            if isinstance(part, BodyPartReader) and part.name == "file":
                break
            if isinstance(part, BodyPartReader):
                await part.release()
        seen = 0
        while chunk := await part.read_chunk(_STREAM_CHUNK):
            seen += len(chunk)
            if seen > limit_bytes:
                raise PayloadTooLarge(f"The CSV body is over {limit_bytes} bytes.",
                                      details={"limit_bytes": limit_bytes})
            yield chunk
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # a malformed body's refusals
        raise ValidationError("Malformed multipart/form-data body.",
                              details={"field": "Content-Type", "reason": type(exc).__name__}) from None


@routes.post("/v1/campaigns/{campaign_id}/codes", response=CodeUploadResult,
             errors=[ValidationError, PayloadTooLarge, NotFound, Conflict, StorageUnavailable],
             request_content=_UPLOAD_CONTENT,
             query=[("type", "code type of a text/csv body (required with one)", False)])
async def upload_codes(call: Call[None]) -> CodeUploadResult:
    """Add codes to a campaign's pool from S3 ({file_key}) or a streamed text/csv body."""
    campaign_id = call.path_id("campaign_id")
    request = call.request
    settings = call.runtime.settings
    codes = call.runtime.codes
    query_type = call.query_type()
    if request.content_type == "application/json":
        limit = settings.body_limit_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"The request body is over {limit} bytes.",
                                  details={"limit_bytes": limit})
        raw = await request.read()  # bounded by the app's client_max_size
        try:
            body = _file_decoder.decode(raw or b"{}")
        except msgspec.MsgspecError as exc:
            raise validation_error(exc) from None
        code_type = type_of_key(campaign_id, body.file_key)
        if query_type is not None and query_type != code_type:
            raise ValidationError("?type= differs from the type in file_key.",
                                  details={"field": "type"})
        async with contextlib.aclosing(s3_chunks(settings, body.file_key)) as chunks:
            result = await codes.upload(call.tenant_id, campaign_id, code_type, chunks)
    elif request.content_type in (*_CSV_TYPES, "multipart/form-data"):
        limit = settings.csv_body_limit_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"The CSV body is over {limit} bytes.",
                                  details={"limit_bytes": limit})
        body_chunks = (_file_part(request, limit) if request.content_type == "multipart/form-data"
                       else _limited(request.content, limit))
        async with contextlib.aclosing(body_chunks) as chunks:
            result = await codes.upload(call.tenant_id, campaign_id, query_type, chunks)
    else:
        raise ValidationError("Send application/json {file_key}, a text/csv body or "
                              "multipart/form-data with a field `file`.",
                              details={"field": "Content-Type"})
    return CodeUploadResult(in_=result.lines, inserted=result.inserted, updated=result.updated,
                            skipped=result.skipped)


@routes.post("/v1/campaigns/{campaign_id}/reservations", body=ReservationRequest,
             response=ReservationResult, errors=[NotFound, UnknownType, InsufficientCodes],
             keys_in_handler=True, hot=True)
async def reserve_codes(call: Call[ReservationRequest]) -> ReservationResult | web.StreamResponse:
    """Reserve up to `count` codes of a type (fewer or none when the pool runs low;
    with partial: false all of them, or 409 INSUFFICIENT_CODES)."""
    b = call.body
    campaign_id, ttl_ms = call.path_id("campaign_id"), None if b.ttl_s is None else b.ttl_s * 1000
    record = request_record(call.request, call.tenant_id, call.raw)
    if record is None:
        return reservation_view(await call.runtime.codes.reserve(
            call.tenant_id, campaign_id, b.type, b.count, ttl_ms=ttl_ms, partial=b.partial))
    outcome = await call.runtime.codes.reserve_keyed(
        call.tenant_id, campaign_id, b.type, b.count, ttl_ms=ttl_ms, partial=b.partial, record=record)
    return call.keyed(outcome, reservation_view)


def reservation_view(r: Reservation) -> ReservationResult:
    expires = ms_to_dt(r.expires_at_ms)
    assert expires is not None
    return ReservationResult(reserve_id=r.reserve_id, codes=r.codes, expires_at=expires)


@routes.post("/v1/campaigns/{campaign_id}/assign", body=CodesChange, response=CodesChangeResult,
             errors=[NotFound, UnknownType])
async def assign_codes(call: Call[CodesChange]) -> CodesChangeResult:
    """Assign reserved codes for good (expired reservations too; only reserve_id's when given),
    to `assigned_to` when given."""
    b = call.body
    changed = await call.runtime.codes.assign(call.tenant_id, call.path_id("campaign_id"), b.codes,
                                              reserve_id=b.reserve_id, type=b.type,
                                              assigned_to=b.assigned_to)
    return CodesChangeResult(in_=changed.requested, updated=changed.updated)


@routes.post("/v1/campaigns/{campaign_id}/release", body=CodesChange, response=CodesChangeResult,
             errors=[NotFound, UnknownType])
async def release_codes(call: Call[CodesChange]) -> CodesChangeResult:
    """Return reserved codes to the pool (never assigned ones; idempotent)."""
    b = call.body
    if b.assigned_to is not None:
        raise ValidationError("assigned_to is for assign only.", details={"field": "assigned_to"})
    changed = await call.runtime.codes.release(call.tenant_id, call.path_id("campaign_id"), b.codes,
                                               reserve_id=b.reserve_id, type=b.type)
    return CodesChangeResult(in_=changed.requested, updated=changed.updated)


@routes.get("/v1/campaigns/{campaign_id}/codes/count", response=CodeCounts,
            errors=[ValidationError, NotFound, UnknownType],
            query=[("type", "count one type (default: all of the campaign's)", False),
                   ("status", "available, reserved or assigned (default: all three)", False)])
async def count_codes(call: Call[None]) -> CodeCounts:
    """Codes by status; an expired reservation counts as available."""
    status = call.request.query.get("status")
    if status is not None and status not in STATUSES:
        raise ValidationError("status must be available, reserved or assigned.",
                              details={"field": "status"})
    counts = await call.runtime.codes.count(call.tenant_id, call.path_id("campaign_id"),
                                            call.query_type())
    if status is None:
        return CodeCounts(available=counts.available, reserved=counts.reserved,
                          assigned=counts.assigned)
    return CodeCounts(**{status: getattr(counts, status)})
