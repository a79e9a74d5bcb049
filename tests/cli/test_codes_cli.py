"""``dropgate codes upload``'s logic: a local file streamed in chunks, with progress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dropgate.cli.codes import summary, upload_file
from dropgate.errors import NotFound, ValidationError
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.codes import assert_pg_matches_redis


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(code_upload_batch_size=1_000)


async def test_upload_file_with_progress(runtime: Runtime, persister: Persister,
                                         tmp_path: Path) -> None:
    await runtime.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
    path = tmp_path / "codes.csv"
    path.write_text("".join(f"  CLI{i:06d}\r\n" for i in range(60_000)) + "\n\nCLI000001\n")
    seen: list[tuple[int, int]] = []
    result = await upload_file(runtime, "acme", path, "cli", "tm",
                               lambda done, total: seen.append((done, total)))
    assert (result.lines, result.inserted, result.updated, result.skipped) == (60_001, 60_000, 0, 1)
    assert result.batches == 61  # the last holds only the repeat, skipped across batches
    assert len(seen) > 1 and seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert "inserted 60,000" in summary(result)
    assert (await runtime.codes.count("acme", "cli", "tm")).available == 60_000
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "cli")


async def test_upload_file_errors(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("".join(f"OK{i}\n" for i in range(2_500)) + "bad line\n")
    with pytest.raises(NotFound):
        await upload_file(runtime, "nobody", path, "cli", "tm")
    await runtime.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
    with pytest.raises(FileNotFoundError):
        await upload_file(runtime, "acme", tmp_path / "missing.csv", "cli", "tm")
    with pytest.raises(ValidationError) as caught:
        await upload_file(runtime, "acme", path, "cli", "tm")
    assert caught.value.details["line"] == 2_501
    assert caught.value.details["applied"]["inserted"] == 0  # all or nothing (#21)
