"""Campaign code pools."""

from __future__ import annotations

from typing import Annotated

import msgspec

from dropgate.models.common import CodeType, Id, NonNegative, Struct, Timestamp

ReserveCount = Annotated[int, msgspec.Meta(ge=1, le=10_000, description="codes wanted (1-10,000)")]
TtlSeconds = Annotated[int, msgspec.Meta(ge=1, le=30 * 86400,
                                         description="reservation lifetime in seconds "
                                                     "(default DROPGATE_CODE_RESERVATION_TTL)")]
CodeList = Annotated[list[Id], msgspec.Meta(max_length=10_000)]


class CodeUploadFile(Struct, kw_only=True):
    """Upload from S3: ``codes/{campaign_id}/{type}/<name>`` in ``DROPGATE_S3_BUCKET``."""

    file_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class CodeUploadResult(msgspec.Struct, kw_only=True):
    in_: NonNegative = msgspec.field(name="in")
    inserted: NonNegative
    updated: NonNegative
    skipped: NonNegative


class ReservationRequest(Struct, kw_only=True):
    type: CodeType
    count: ReserveCount
    ttl_s: TtlSeconds | None = None


class ReservationResult(msgspec.Struct, kw_only=True):
    reserve_id: str
    codes: list[str]
    expires_at: Timestamp


class CodesChange(Struct, kw_only=True):
    """Assign or release. ``reserve_id``: only codes held under it; ``type``: only that type."""

    codes: CodeList
    reserve_id: Id | None = None
    type: CodeType | None = None


class CodesChangeResult(msgspec.Struct, kw_only=True):
    in_: NonNegative = msgspec.field(name="in")
    updated: NonNegative


class CodeCounts(msgspec.Struct, kw_only=True):
    """Counts by status; only the asked one when ``status`` is given."""

    available: NonNegative | msgspec.UnsetType = msgspec.UNSET
    reserved: NonNegative | msgspec.UnsetType = msgspec.UNSET
    assigned: NonNegative | msgspec.UnsetType = msgspec.UNSET
