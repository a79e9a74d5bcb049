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
NonEmptyCodeList = Annotated[list[Id], msgspec.Meta(min_length=1, max_length=10_000,
                                                    description="1-10,000 codes")]
TypeList = Annotated[list[CodeType], msgspec.Meta(min_length=1, max_length=64)]
Watermark = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
CampaignName = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00]*$")]


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
    partial: bool = True  # false: all or nothing (409 INSUFFICIENT_CODES on a short pool)


class ReservationResult(msgspec.Struct, kw_only=True):
    reserve_id: str
    codes: list[str]
    expires_at: Timestamp


class CodesChange(Struct, kw_only=True):
    """Assign or release. ``reserve_id``: only codes held under it; ``type``: only that type;
    ``assigned_to`` (assign only): the user the codes go to, stored with each code."""

    codes: NonEmptyCodeList
    reserve_id: Id | None = None
    type: CodeType | None = None
    assigned_to: Id | None = None


class CodesChangeResult(msgspec.Struct, kw_only=True):
    in_: NonNegative = msgspec.field(name="in")
    updated: NonNegative


class CodeCounts(msgspec.Struct, kw_only=True):
    """Counts by status; only the asked one when ``status`` is given."""

    available: NonNegative | msgspec.UnsetType = msgspec.UNSET
    reserved: NonNegative | msgspec.UnsetType = msgspec.UNSET
    assigned: NonNegative | msgspec.UnsetType = msgspec.UNSET


class CampaignCreate(Struct, kw_only=True):
    campaign_id: Id
    name: CampaignName = ""
    types: TypeList
    reservation_ttl_s: TtlSeconds | None = None
    low_watermark: Watermark | None = None


class CampaignPatch(Struct, kw_only=True):
    """Types are only ever added (a code keeps its type for good)."""

    name: CampaignName | None = None
    types: TypeList | None = None
    reservation_ttl_s: TtlSeconds | msgspec.UnsetType | None = msgspec.UNSET
    low_watermark: Watermark | msgspec.UnsetType | None = msgspec.UNSET


class TypeCounts(msgspec.Struct, kw_only=True):
    available: NonNegative
    reserved: NonNegative
    assigned: NonNegative


class Campaign(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A campaign; ``counts`` (live, per type) only on the single-campaign answers."""

    campaign_id: str
    name: str
    types: list[str]
    reservation_ttl_s: int | None
    low_watermark: int | None
    created_at: Timestamp
    counts: dict[str, TypeCounts] | None = None


class CodeInfo(msgspec.Struct, kw_only=True):
    """One code of a campaign (``status``: an expired reservation is ``available``)."""

    code: str
    type: str
    status: str
    reserve_id: str | None
    reserved_at: Timestamp | None
    assigned_at: Timestamp | None
    assigned_to: str | None
