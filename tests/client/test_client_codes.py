"""``client.codes`` against the live server: every method and the refusals it can meet."""

from __future__ import annotations

import msgspec
import pytest

from dropgate.client import AsyncDropgate, Conflict, StorageUnavailable, ValidationError
from dropgate.models.codes import CodeCounts, CodesChangeResult, CodeUploadResult


async def test_upload_reserve_assign_release_count(dg: AsyncDropgate) -> None:
    uploaded = await dg.codes.upload("spring", type="tm", codes=["A1", "A2", "A3", "A2", "A4"])
    assert uploaded == CodeUploadResult(in_=5, inserted=4, updated=0, skipped=1)
    # the bytes of a file, sent as they are (trimmed, blank lines skipped by the server)
    again = await dg.codes.upload("spring", type="tm", codes=b" A4 \n\nA5\n")
    assert (again.in_, again.inserted, again.updated, again.skipped) == (2, 1, 1, 0)
    await dg.codes.upload("spring", type="external", codes=["E1"])
    assert await dg.codes.count("spring") == CodeCounts(available=6, reserved=0, assigned=0)
    assert await dg.codes.count("spring", type="tm") == CodeCounts(available=5, reserved=0, assigned=0)

    held = await dg.codes.reserve("spring", type="tm", count=3, ttl_s=600)
    assert len(held.codes) == 3 and set(held.codes) <= {"A1", "A2", "A3", "A4", "A5"}
    assert held.reserve_id and held.expires_at.tzinfo is not None
    other = await dg.codes.reserve("spring", type="tm", count=10)
    assert len(other.codes) == 2 and not set(other.codes) & set(held.codes)  # fewer: pool ran low
    assert (await dg.codes.reserve("spring", type="tm", count=1)).codes == []

    # another reservation's codes are untouched when reserve_id is given
    assert await dg.codes.assign("spring", codes=held.codes[:2] + other.codes[:1],
                                 reserve_id=held.reserve_id) == CodesChangeResult(in_=3, updated=2)
    assert (await dg.codes.assign("spring", codes=held.codes[:2])).updated == 0  # already assigned
    released = await dg.codes.release("spring", codes=[held.codes[2], *other.codes], type="tm")
    assert released == CodesChangeResult(in_=3, updated=3)
    assert (await dg.codes.release("spring", codes=other.codes)).updated == 0  # idempotent
    assert await dg.codes.count("spring", type="tm") == CodeCounts(available=3, reserved=0, assigned=2)
    only = await dg.codes.count("spring", status="assigned")
    assert only.assigned == 2 and only.available is msgspec.UNSET and only.reserved is msgspec.UNSET


async def test_refusals(dg: AsyncDropgate) -> None:
    await dg.codes.upload("c2", type="tm", codes=["K1", "K2"])
    with pytest.raises(Conflict) as conflict:  # a code belongs to one type of its campaign
        await dg.codes.upload("c2", type="external", codes=["E1", "K2"])
    assert conflict.value.details["code"] == "K2"
    with pytest.raises(ValidationError) as bad_line:
        await dg.codes.upload("c2", type="tm", codes=["OK", "not valid!"])
    assert bad_line.value.details["line"] == 2
    with pytest.raises(ValidationError):
        await dg.codes.reserve("c2", type="tm", count=0)
    with pytest.raises(ValidationError):
        await dg.codes.reserve("c2", type="Not A Type", count=1)
    with pytest.raises(ValidationError) as bad_status:
        await dg.codes.count("c2", status="lost")  # type: ignore[arg-type]
    assert bad_status.value.details["field"] == "status"
    with pytest.raises(StorageUnavailable):  # the live server has no S3 bucket configured
        await dg.codes.upload("c2", file_key="codes/c2/tm/file.csv")
    with pytest.raises(TypeError):
        await dg.codes.upload("c2", type="tm")
    with pytest.raises(TypeError):
        await dg.codes.upload("c2", codes=["X"])
    assert await dg.codes.count("c2") == CodeCounts(available=2, reserved=0, assigned=0)
