"""The HTTP export streams: 1,000,000 codes through a real ``dropgate serve`` keep the
server's RSS flat and take under 10 s (issue #17). About 6 s here with seeding, so
the full-size run is in the suite; BENCHMARKS.md has its numbers."""

from __future__ import annotations

from pathlib import Path

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.export_rss import run_export

N = 1_000_000
# The CSV is ~30 MB: a server holding the export (or a large part of it) in memory
# grows past this; a streaming one grows by ~1 MB (aiohttp's and COPY's buffers).
MAX_GROWTH_MB = 16


async def test_export_of_a_million_codes_keeps_server_rss_flat(runtime: Runtime, settings: Settings,
                                                                tmp_path: Path) -> None:
    run = await run_export(settings, runtime.pool, N, tmp_path / "serve.log")
    assert run.codes == N
    assert run.bytes > 1.5 * MAX_GROWTH_MB * 1024 * 1024  # holding it would show
    assert run.growth_mb < MAX_GROWTH_MB, run
    assert run.seconds < 10, run  # ~0.7 s measured: a wide margin for a shared machine
