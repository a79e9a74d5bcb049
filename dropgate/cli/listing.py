"""``dropgate keys list``, ``dropgate codes export``, ``dropgate purchases list --offer``.

An operator's lists read the same keyset pages as the API (``persistence/lists.py``
with the API's ``ListSpec``s, ``http/listspecs.py``): the same order, filters and
index range scans, page after page, never the whole list in memory. On a terminal
they print a table; ``--json`` prints one JSON object per line (JSON Lines), for
machines. ``codes export`` piped elsewhere prints the HTTP export's CSV.
Exit status: 0 listed, 2 bad arguments or no such tenant/campaign (one line on stderr).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from dropgate.cli.common import Invocation
from dropgate.errors import ValidationError
from dropgate.ids import check_id, check_type

if TYPE_CHECKING:
    from dropgate.persistence.lists import ListSpec
    from dropgate.runtime import Runtime

PAGE = 1000  # the API's largest page
KEY_COLUMNS = ("key_id", "role", "tenant_id", "name", "created_at", "revoked_at")
PURCHASE_COLUMNS = ("purchase_id", "offer_id", "user_id", "quantity", "status", "amount",
                    "currency", "created_at")
CODE_COLUMNS = ("code", "type", "status", "reserve_id", "reserved_at", "assigned_at", "assigned_to")
_TABLE_ROWS = 200  # a table is sized on the first rows; later wider cells widen their line


class ArgumentError(Exception):
    """A bad argument: one line, exit status 2."""


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line instead of a table")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many items")


def checked(value: str | None, name: str, *, kind: str = "id") -> str | None:
    """``value`` checked as the API checks it, else ``ArgumentError`` naming the flag."""
    if value is None:
        return None
    try:
        return check_type(value, name) if kind == "type" else check_id(value, name)
    except ValidationError as exc:
        raise ArgumentError(f"{name}: {exc}") from None


async def items(runtime: Runtime, spec: ListSpec, scope: Sequence[Any],
                query: Mapping[str, str], *, limit: int | None = None) -> AsyncIterator[Any]:
    """Every item of ``spec`` within ``scope`` (filtered by ``query``), page after page."""
    from dropgate.persistence.lists import Cursors, cursor_secret, fetch_page

    cursors = Cursors(await cursor_secret(runtime.pool))
    cursor: str | None = None
    left = limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        page = await fetch_page(runtime.pool, cursors, spec, scope=scope, query=query, limit=size,
                                cursor=cursor)
        for item in page.data:
            yield item
        if left is not None:
            left -= len(page.data)
        if not page.has_more or page.next_cursor is None:
            return
        cursor = page.next_cursor


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _row(item: Any, columns: Sequence[str]) -> list[str]:
    return [_cell(getattr(item, c)) for c in columns]


async def write(rows: AsyncIterator[Any], columns: Sequence[str], *, as_json: bool,
                as_csv: bool = False, out: TextIO | None = None) -> int:
    """Print ``rows`` as JSON Lines, CSV or a table; the number printed."""
    out = out or sys.stdout
    n = 0
    if as_json:
        async for item in rows:
            out.write(msgspec.json.encode(item).decode() + "\n")
            n += 1
        return n
    if as_csv:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        async for item in rows:
            writer.writerow(_row(item, columns))
            n += 1
        return n
    head: list[list[str]] = []
    async for item in rows:
        head.append(_row(item, columns))
        n += 1
        if len(head) == _TABLE_ROWS:
            break
    widths = [max([len(c), *(len(r[i]) for r in head)]) for i, c in enumerate(columns)]
    _table_lines(out, [list(columns)], widths)
    _table_lines(out, head, widths)
    async for item in rows:
        _table_lines(out, [_row(item, columns)], widths)
        n += 1
    if n == 0:
        out.write("(none)\n")
    return n


def _table_lines(out: TextIO, rows: Iterable[list[str]], widths: Sequence[int]) -> None:
    for r in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n")


async def run_guarded(command: Callable[[Invocation], Awaitable[int]], call: Invocation) -> int:
    """``command``, with a bad argument as one line on stderr and exit status 2."""
    if call.args.limit is not None and call.args.limit < 1:
        return fail("--limit must be at least 1")
    try:
        return await command(call)
    except ArgumentError as exc:
        return fail(str(exc))


def fail(message: str) -> int:
    print(f"dropgate: {message}", file=sys.stderr)
    return 2


async def keys_list(call: Invocation) -> int:
    """``dropgate keys list [--tenant T] [--role R]``: never the secret."""
    from dropgate.http import listspecs as L

    args = call.args
    tenant = checked(args.tenant, "--tenant")
    query = {"role": args.role} if args.role else {}
    async with call.runtime() as runtime:
        if tenant is not None:
            if not await runtime.tenants.exists(tenant):
                return fail(f"no tenant {tenant!r}")
            rows = items(runtime, L.KEYS_OF_TENANT, (tenant,), query, limit=args.limit)
        else:
            rows = items(runtime, L.KEYS, (), query, limit=args.limit)
        await write(rows, KEY_COLUMNS, as_json=args.json)
    return 0


async def purchases_list(call: Invocation) -> int:
    """``dropgate purchases list --tenant T [--offer O] [--user U] [--status S]``."""
    from dropgate.http import listspecs as L

    args = call.args
    tenant = checked(args.tenant, "--tenant")
    query = {k: v for k, v in (("offer_id", checked(args.offer, "--offer")),
                               ("user_id", checked(args.user, "--user")),
                               ("status", args.status)) if v is not None}
    async with call.runtime() as runtime:
        if not await runtime.tenants.exists(tenant or ""):
            return fail(f"no tenant {tenant!r}")
        await write(items(runtime, L.PURCHASES, (tenant,), query, limit=args.limit),
                    PURCHASE_COLUMNS, as_json=args.json)
    return 0


async def codes_export(call: Invocation) -> int:
    """``dropgate codes export --tenant T --campaign C [--type T] [--status S]``."""
    from dropgate.errors import NotFound, UnknownType
    from dropgate.http import listspecs as L

    args = call.args
    tenant = checked(args.tenant, "--tenant")
    campaign = checked(args.campaign, "--campaign")
    code_type = checked(args.type, "--type", kind="type")
    query = {k: v for k, v in (("type", code_type), ("status", args.status)) if v is not None}
    async with call.runtime() as runtime:
        try:
            await runtime.codes.require_campaign(tenant or "", campaign or "", code_type)
        except (NotFound, UnknownType) as exc:
            return fail(str(exc))
        as_csv = not args.json and (args.csv or not sys.stdout.isatty())
        await write(items(runtime, L.CODES, (tenant, campaign), query, limit=args.limit),
                    CODE_COLUMNS, as_json=args.json, as_csv=as_csv)
    return 0
