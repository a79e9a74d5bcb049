"""A campaign code's record: the one spelling Redis stores, Python reads and SQL rebuilds.

``type|status`` while the code has neither reservation nor assignment, else
``type|status|reserve_id|reserved_ms|expires_ms|assigned_ms`` (status ``a`` / ``r`` /
``s``), optionally followed by ``#n``: the upload that inserted the code, until the code
is first changed (Redis only). The scripts write it with ``dg_code_pack`` and read it with
``dg_code_unpack`` (engine/lua/lib); this module is their Python side, and ``PACKED_SQL``
spells a ``campaign_codes`` row the same way (less the mark), so reconcile compares
records as stored.
"""

from __future__ import annotations

from typing import NamedTuple

from dropgate.specs.entities import CODES

STATUS = {"a": "available", "r": "reserved", "s": "assigned"}
LETTER = {v: k for k, v in STATUS.items()}


class CodeRecord(NamedTuple):
    type: str
    status: str  # available / reserved / assigned
    reserve_id: str | None
    reserved_ms: int | None
    expires_ms: int | None
    assigned_ms: int | None
    upload: int | None  # the upload that inserted the code (its ``#n`` mark), until first changed


def parse_record(raw: str) -> CodeRecord:
    body, _, mark = raw.partition("#")
    f = body.split("|") + [""] * 5
    reserved, expires, assigned = (int(v) if v else None for v in f[3:6])
    return CodeRecord(f[0], STATUS.get(f[1] or "a", f[1]), f[2] or None, reserved, expires, assigned,
                      int(mark) if mark.isascii() and mark.isdigit() else None)


def pack_record(type_: str, status: str, reserve_id: str | None, reserved_ms: int | None,
                expires_ms: int | None, assigned_ms: int | None) -> str:
    """The record of a code (as ``dg_code_pack``, without an upload mark)."""
    if not reserve_id and assigned_ms is None:
        return f"{type_}|{LETTER[status]}"
    fields = (type_, LETTER[status], reserve_id, reserved_ms, expires_ms, assigned_ms)
    return "|".join("" if v is None else str(v) for v in fields)


def _ms(name: str) -> str:
    return f"coalesce(({CODES.field(name).expr()})::text, '')"


# pack_record in SQL, over a campaign_codes row
PACKED_SQL = (
    "type || '|' || CASE status WHEN 'available' THEN 'a' WHEN 'reserved' THEN 'r' ELSE 's' END"
    " || CASE WHEN reserve_id IS NULL AND assigned_at IS NULL THEN '' ELSE"
    f" '|' || coalesce(reserve_id, '') || '|' || {_ms('reserved_ms')} || '|' || {_ms('expires_ms')}"
    f" || '|' || {_ms('assigned_ms')} END")
