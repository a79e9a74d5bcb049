"""``dropgate codes upload FILE --campaign C --type T``: the logic behind the command.

The same streamed upload as ``POST /v1/campaigns/{campaign_id}/codes`` with a
text/csv body: the file is read in chunks (never whole), parsed incrementally and
applied in batches of ``code_upload_batch_size`` codes, one script call each.
``progress(bytes_read, total_bytes)`` is called after every chunk, for a progress bar.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO

from dropgate.engine.codes import UploadResult
from dropgate.errors import NotFound
from dropgate.ids import check_id, check_type
from dropgate.runtime import Runtime

CHUNK_BYTES = 256 * 1024
Progress = Callable[[int, int], None]


async def _read_chunks(f: BinaryIO, progress: Progress | None) -> AsyncGenerator[bytes, None]:
    total = os.fstat(f.fileno()).st_size
    done = 0
    with f:
        while True:
            chunk = await asyncio.to_thread(f.read, CHUNK_BYTES)
            if not chunk:
                return
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            yield chunk


async def upload_file(
    runtime: Runtime,
    tenant_id: str,
    path: str | Path,
    campaign: str,
    type: str,
    progress: Progress | None = None,
) -> UploadResult:
    """Upload a local code file into ``campaign``'s pool of ``type``.

    Raises the API's errors (``ValidationError`` naming a malformed line, with
    ``details["applied"]`` counting the batches applied before it; ``Conflict`` for a
    code known under another type; ``NotFound`` for an unknown tenant);
    ``FileNotFoundError`` for a missing file.
    """
    check_id(tenant_id, "tenant_id")
    check_id(campaign, "campaign")
    check_type(type)
    if not await runtime.tenants.exists(tenant_id):
        raise NotFound(f"No tenant {tenant_id}.", details={"tenant_id": tenant_id})
    f: BinaryIO = await asyncio.to_thread(open, Path(path), "rb")
    chunks = _read_chunks(f, progress)
    try:
        return await runtime.codes.upload(tenant_id, campaign, type, chunks)
    finally:
        await chunks.aclose()
        f.close()  # also when the generator never started


def summary(result: UploadResult) -> str:
    """One line for the terminal, in the API's terms."""
    return (f"in {result.lines:,}  inserted {result.inserted:,}  updated {result.updated:,}  "
            f"skipped {result.skipped:,}  ({result.batches} batches)")
