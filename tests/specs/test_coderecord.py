"""A campaign code's record: Python's pack and parse, PostgreSQL's spelling and the
scripts' records agree (reconcile compares Redis' records with PostgreSQL's strings, so
a difference between them would read as drift on every code)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dropgate.ids import text
from dropgate.runtime import Runtime
from dropgate.specs.coderecord import PACKED_SQL, CodeRecord, pack_record, parse_record

MS = 1_764_000_000_123
ROWS = [  # type, status, reserve_id, reserved_ms, expires_ms, assigned_ms
    ("tm", "available", None, None, None, None),
    ("tm", "reserved", "r1", MS, MS + 60_000, None),
    ("vip", "assigned", "r2", MS, MS + 60_000, MS + 5),
    ("vip", "assigned", None, None, None, MS + 7),  # assigned without a reservation
    ("tm", "available", "r3", MS, MS + 1, None),  # released: its reservation fields stay
]


@pytest.mark.parametrize("row", ROWS)
def test_pack_and_parse_are_inverse(row: tuple[str, str, str | None, int | None, int | None, int | None]) -> None:
    assert parse_record(pack_record(*row)) == CodeRecord(*row, upload=None)


def test_an_upload_mark_is_read_and_an_untouched_code_is_short() -> None:
    assert pack_record("tm", "available", None, None, None, None) == "tm|a"
    assert parse_record("tm|a#12") == CodeRecord("tm", "available", None, None, None, None, 12)
    assert parse_record("tm|r|r1|1|2|") == CodeRecord("tm", "reserved", "r1", 1, 2, None, None)


async def test_postgres_spells_a_row_as_python_packs_it(runtime: Runtime) -> None:
    def ts(ms: int | None) -> datetime | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)

    for row in ROWS:
        ty, st, rid, r, x, a = row
        spelt = await runtime.pool.fetchval(
            f"SELECT {PACKED_SQL} FROM (SELECT $1::text AS type, $2::text AS status, $3::text AS reserve_id,"
            " $4::timestamptz AS reserved_at, $5::timestamptz AS expires_at, $6::timestamptz AS assigned_at) c",
            ty, st, rid, ts(r), ts(x), ts(a))
        assert spelt == pack_record(*row), row


async def test_the_scripts_records_parse_as_the_engine_reports_them(runtime: Runtime) -> None:
    tenant = "crec"
    await runtime.codes.upload_batch(tenant, "camp", "tm", ["A1", "A2", "A3"])
    await runtime.codes.reserve(tenant, "camp", "tm", 2)
    raw = await runtime.redis.hgetall(runtime.keys.tenant(tenant).codes_records("camp"))
    parsed = {text(code): parse_record(text(record)) for code, record in raw.items()}
    assert sorted(r.status for r in parsed.values()) == ["available", "reserved", "reserved"]
    for code, rec in parsed.items():
        state = await runtime.codes.code(tenant, "camp", code)
        assert (state.type, state.status, state.reserve_id, state.reserved_at_ms) == (
            rec.type, rec.status, rec.reserve_id, rec.reserved_ms)
        assert rec.status != "reserved" or (rec.expires_ms or 0) > (rec.reserved_ms or 0)
