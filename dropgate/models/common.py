"""Field types every domain's structs share: ids, code types, times."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from dropgate.errors import DropgateError
from dropgate.ids import ID_MAX_LENGTH, ID_PATTERN, TYPE_PATTERN

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, min_length=1, max_length=ID_MAX_LENGTH,
                                 description="1-64 chars of [A-Za-z0-9_.-]")]
CodeType = Annotated[str, msgspec.Meta(pattern=TYPE_PATTERN, description="code type")]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 UTC time")]
# Free text (names, references): PostgreSQL text and jsonb cannot hold NUL, so it is refused here.
Text = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00]*$",
                                   description="free text, at most 200 characters, no NUL")]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=False):
    """Base of request bodies: unknown fields are a 400, not silently dropped."""


class ErrorBody(msgspec.Struct, kw_only=True):
    """The one error shape of the API."""

    error: str
    code: str
    details: dict[str, Any] = {}


_error_encoder = msgspec.json.Encoder()


def error_body(exc: DropgateError) -> bytes:
    """The bytes of ``exc`` in the error shape: what the API sends, and what an
    idempotency record stores so that a replay is the same bytes."""
    return _error_encoder.encode(ErrorBody(error=exc.message, code=exc.code, details=exc.details))
