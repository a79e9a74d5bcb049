"""``client.codes``: campaign code pools."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Literal

from dropgate.client.base import Namespace
from dropgate.models.codes import (
    CodeCounts,
    CodesChange,
    CodesChangeResult,
    CodeUploadFile,
    CodeUploadResult,
    ReservationRequest,
    ReservationResult,
)

CodeStatus = Literal["available", "reserved", "assigned"]


class Codes(Namespace):
    """A campaign's code pools (``/v1/campaigns/{campaign_id}/...``), one pool per code type.

    Codes move available -> reserved (for a while) -> assigned (for good), or back
    from reserved to available when released or when the reservation expires.
    """

    async def upload(
        self,
        campaign_id: str,
        *,
        codes: bytes | Iterable[str] | None = None,
        type: str | None = None,
        file_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> CodeUploadResult:
        """Add codes to the campaign's pool (``POST /v1/campaigns/{campaign_id}/codes``).

        Either ``codes`` with their ``type``: the codes themselves (an iterable of
        strings, or the bytes of a file with one code per line), sent as a
        ``text/csv`` body; or ``file_key``: an S3 key ``codes/{campaign_id}/{type}/<file>``
        the server reads from its bucket (``type``, when given, must match the key's).
        The answer counts the lines (``in_``, ``"in"`` on the wire), the new codes
        (``inserted``), those already known (``updated``, status kept) and repeats
        within the upload (``skipped``); uploading the same codes again changes no
        status. Raises ``ValidationError`` (a malformed line, a missing ``type``),
        ``PayloadTooLarge``, ``NotFound`` (no such S3 object), ``Conflict`` (a code
        that belongs to another type of the campaign) or ``StorageUnavailable``.
        """
        if (codes is None) == (file_key is None):
            raise TypeError("Pass either codes (with type) or file_key.")
        if file_key is not None:
            return await self._call("POST", "/v1/campaigns/{campaign_id}/codes", CodeUploadResult,
                                    path_params={"campaign_id": campaign_id},
                                    body=CodeUploadFile(file_key=file_key), query={"type": type},
                                    idempotency_key=idempotency_key)
        if type is None:
            raise TypeError("Uploading codes needs their type.")
        assert codes is not None
        data = codes if isinstance(codes, bytes) else "".join(f"{c}\n" for c in codes).encode()
        return await self._call("POST", "/v1/campaigns/{campaign_id}/codes", CodeUploadResult,
                                path_params={"campaign_id": campaign_id}, body=data,
                                content_type="text/csv", query={"type": type},
                                idempotency_key=idempotency_key)

    async def reserve(
        self,
        campaign_id: str,
        *,
        type: str,
        count: int,
        ttl_s: int | None = None,
        partial: bool = True,
        idempotency_key: str | None = None,
    ) -> ReservationResult:
        """Reserve up to ``count`` available codes of ``type`` (``POST /v1/campaigns/{campaign_id}/reservations``).

        Fewer, or none, when the pool runs low (not an error). The codes stay
        reserved under the answer's ``reserve_id`` until ``expires_at`` (``ttl_s``
        seconds, default the server's ``DROPGATE_CODE_RESERVATION_TTL``), then count
        as available again. ``partial=False``: all ``count`` codes or none (raises
        ``InsufficientCodes``). Raises ``NotFound`` (no such campaign), ``UnknownType``,
        ``ValidationError`` (count outside 1-10,000) or ``PersistenceLagging``. Not
        replayed by key: a retry after a lost answer reserves again (the first reservation lapses at its expiry).
        """
        return await self._call("POST", "/v1/campaigns/{campaign_id}/reservations",
                                ReservationResult, path_params={"campaign_id": campaign_id},
                                body=ReservationRequest(type=type, count=count, ttl_s=ttl_s,
                                                        partial=partial),
                                idempotency_key=idempotency_key)

    async def assign(
        self,
        campaign_id: str,
        *,
        codes: builtins.list[str],
        reserve_id: str | None = None,
        type: str | None = None,
        assigned_to: str | None = None,
        idempotency_key: str | None = None,
    ) -> CodesChangeResult:
        """Assign reserved codes for good (``POST /v1/campaigns/{campaign_id}/assign``),
        to the user ``assigned_to`` when given (stored with each code).

        Expired reservations are assigned too; with ``reserve_id`` only the codes
        held under that reservation, with ``type`` only codes of that type.
        ``updated`` counts the codes assigned by this call (a repeat assigns none).
        Raises ``ValidationError`` or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/campaigns/{campaign_id}/assign", CodesChangeResult,
                                path_params={"campaign_id": campaign_id},
                                body=CodesChange(codes=codes, reserve_id=reserve_id, type=type,
                                                 assigned_to=assigned_to),
                                idempotency_key=idempotency_key)

    async def release(
        self,
        campaign_id: str,
        *,
        codes: builtins.list[str],
        reserve_id: str | None = None,
        type: str | None = None,
        idempotency_key: str | None = None,
    ) -> CodesChangeResult:
        """Return reserved codes to the pool (``POST /v1/campaigns/{campaign_id}/release``).

        Never touches assigned codes; idempotent (``updated`` counts the
        reservations removed). ``reserve_id`` and ``type`` narrow it as in
        ``assign``. Raises ``ValidationError`` or ``PersistenceLagging``.
        """
        return await self._call("POST", "/v1/campaigns/{campaign_id}/release", CodesChangeResult,
                                path_params={"campaign_id": campaign_id},
                                body=CodesChange(codes=codes, reserve_id=reserve_id, type=type),
                                idempotency_key=idempotency_key)

    async def count(
        self,
        campaign_id: str,
        *,
        type: str | None = None,
        status: CodeStatus | None = None,
    ) -> CodeCounts:
        """Codes by status (``GET /v1/campaigns/{campaign_id}/codes/count``).

        Of one ``type`` or all the campaign's; with ``status`` only that count is
        set (the others are ``msgspec.UNSET``). An expired reservation counts as
        available. Raises ``ValidationError``.
        """
        return await self._call("GET", "/v1/campaigns/{campaign_id}/codes/count", CodeCounts,
                                path_params={"campaign_id": campaign_id},
                                query={"type": type, "status": status})
