"""``dropgate codes upload FILE --tenant T --campaign C --type T``: a code file into a pool.

The same streamed upload as ``POST /v1/campaigns/{campaign_id}/codes`` with a
text/csv body: the file is read in chunks (never whole), parsed incrementally and
applied in batches of ``code_upload_batch_size`` codes, one script call each.
``progress(bytes_read, total_bytes)`` is called after every chunk, for a progress bar.
Exit status: 0 uploaded, 1 the file was refused (a malformed line, a code of another
type), 2 could not run (no such tenant or file, configuration, stores).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dropgate.cli import listing
from dropgate.cli.common import AddCommand, Invocation
from dropgate.errors import NotFound
from dropgate.ids import check_id, check_type

if TYPE_CHECKING:
    from dropgate.engine.codes import UploadResult
    from dropgate.runtime import Runtime

CHUNK_BYTES = 256 * 1024
Progress = Callable[[int, int], None]


def register(add: AddCommand) -> None:
    codes = add("codes", "Campaign code pools.", run)
    codes_sub = codes.add_subparsers(dest="codes_command", required=True)
    upload = codes_sub.add_parser("upload", help="upload a file of codes (one per line), streamed in batches",
                                  description="Upload a file of codes (one per line), streamed in batches.",
                                  epilog=codes.epilog, formatter_class=codes.formatter_class)
    upload.add_argument("file", help="a local CSV file, or s3://bucket/key (read with the usual "
                                      "AWS credentials and DROPGATE_S3_ENDPOINT_URL / _REGION)")
    upload.add_argument("--tenant", required=True, help="the tenant that owns the campaign")
    upload.add_argument("--campaign", required=True)
    upload.add_argument("--type", help="code type, e.g. tm or external (not needed when the "
                                       "file has a code,type header)")
    upload.add_argument("--no-wait", action="store_true", help="do not wait until PostgreSQL has every code")
    export = codes_sub.add_parser(
        "export", help="a campaign's codes in code order: a table on a terminal, else CSV",
        description="A campaign's codes in code order, from PostgreSQL page by page: a table on "
                    "a terminal, the HTTP export's CSV when piped, --json for JSON Lines.",
        epilog=codes.epilog, formatter_class=codes.formatter_class)
    export.add_argument("--tenant", required=True)
    export.add_argument("--campaign", required=True)
    export.add_argument("--type", help="only codes of this type")
    export.add_argument("--status", choices=["available", "reserved", "assigned"])
    export.add_argument("--csv", action="store_true", help="CSV even on a terminal")
    listing.add_output_flags(export)


async def run(call: Invocation) -> int:
    from dropgate.errors import DropgateError
    from dropgate.progressbar import ProgressBar

    args = call.args
    if args.codes_command == "export":
        return await listing.run_guarded(listing.codes_export, call)
    bar = ProgressBar(f"upload {Path(args.file).name}", unit=" B")
    sizes = [0, 0]

    def progress(done: int, total: int) -> None:
        sizes[:] = [done, total]
        bar.update(done, total)

    async with call.runtime(run_persister=not args.no_wait) as runtime:
        try:
            result = await upload_file(runtime, args.tenant, args.file, args.campaign, args.type,
                                       progress=progress)
        except (NotFound, FileNotFoundError) as exc:  # what the command line named is not there
            bar.finish(*sizes)
            print(f"dropgate: {exc}", file=sys.stderr)
            return 2
        except DropgateError as exc:
            bar.finish(*sizes)
            details = getattr(exc, "details", None)
            print(f"dropgate: upload refused: {exc}" + (f" {details}" if details else ""), file=sys.stderr)
            return 1
        bar.finish(*sizes)
        print(summary(result))
        if runtime.persister is not None:
            print("waiting for PostgreSQL to have every code ...", file=sys.stderr, flush=True)
            await runtime.persister.drain(timeout_s=600)
    return 0


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
    type: str | None,
    progress: Progress | None = None,
) -> UploadResult:
    """Upload a local code file, or ``s3://bucket/key``, into ``campaign``'s pool of ``type``
    (None: the file's ``code,type`` header names each row's type). All or nothing.

    Raises the API's errors (``ValidationError`` naming a malformed line, with
    nothing applied; ``Conflict`` for a
    code known under another type; ``NotFound`` for an unknown tenant);
    ``FileNotFoundError`` for a missing file.
    """
    check_id(tenant_id, "tenant_id")
    check_id(campaign, "campaign")
    if type is not None:
        check_type(type)
    if not await runtime.tenants.exists(tenant_id):
        raise NotFound(f"No tenant {tenant_id}.", details={"tenant_id": tenant_id})
    if str(path).startswith("s3://"):
        from dropgate.engine.codestore import parse_s3_url, s3_chunks

        bucket, key = parse_s3_url(str(path))
        async with contextlib.aclosing(s3_chunks(runtime.settings, key, bucket=bucket)) as remote:
            return await runtime.codes.upload(tenant_id, campaign, type, _counted(remote, progress))
    f: BinaryIO = await asyncio.to_thread(open, Path(path), "rb")
    chunks = _read_chunks(f, progress)
    try:
        return await runtime.codes.upload(tenant_id, campaign, type, chunks)
    finally:
        await chunks.aclose()
        f.close()  # also when the generator never started


async def _counted(chunks: AsyncGenerator[bytes, None],
                   progress: Progress | None) -> AsyncGenerator[bytes, None]:
    """An S3 object's chunks, reported to ``progress`` (its size unknown: total = done)."""
    done = 0
    async for chunk in chunks:
        done += len(chunk)
        if progress is not None:
            progress(done, done)
        yield chunk


def summary(result: UploadResult) -> str:
    """One line for the terminal, in the API's terms."""
    return (f"in {result.lines:,}  inserted {result.inserted:,}  updated {result.updated:,}  "
            f"skipped {result.skipped:,}  ({result.batches} batches)")
