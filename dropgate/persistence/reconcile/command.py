"""The ``reconcile`` and ``restore`` subcommands (the CLI only wires them in)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from dropgate.persistence.reconcile.progress import ProgressBar
from dropgate.persistence.reconcile.restore import KeyspaceNotEmpty, restore
from dropgate.persistence.reconcile.runner import Report, Stores, format_table, reconcile

OpenStores = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def add_reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", help="only this tenant's entities")
    parser.add_argument("--entity", action="append", default=[], metavar="KIND|ID",
                        help="an entity kind (tenant, apikey, invite, ...) or one entity "
                             "(invite:<tenant>:<code>); repeatable")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--repair", action="store_true",
                        help="repair drift by the stated policy (docs/reconcile.md); every repair is logged")
    parser.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the persister to commit in-flight events before "
                             "rechecking them (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.epilog = ("exit status: 0 the stores agree, 1 drift, 2 could not run.\n\n" + (parser.epilog or ""))


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="run over a non-empty keyspace: replay the log, then overwrite from PostgreSQL")
    parser.add_argument("--tenant", help="only this tenant's entities")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.epilog = ("exit status: 0 restored, 1 refused (keyspace not empty), 2 could not run.\n\n"
                     + (parser.epilog or ""))


async def reconcile_command(open_stores: OpenStores, args: argparse.Namespace) -> int:
    progress = ProgressBar(enabled=None if not args.no_progress else False)
    try:
        async with open_stores() as stores:
            report = await reconcile(_stores(stores), tenant_id=args.tenant, entities=args.entity,
                                     repair=args.repair, wait_s=args.wait, progress=progress)
    except Exception as exc:  # the stores could not be opened
        report = Report(result="error", exit_code=2, error=f"{type(exc).__name__}: {exc}")
    finally:
        progress.close()
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        print(format_table(report))
    return report.exit_code


async def restore_command(open_stores: OpenStores, args: argparse.Namespace) -> int:
    progress = ProgressBar()
    try:
        async with open_stores() as stores:
            result = await restore(_stores(stores), force=args.force, tenant_id=args.tenant, progress=progress)
    except KeyspaceNotEmpty as exc:
        progress.close()
        print(f"dropgate restore: refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        progress.close()
        print(f"dropgate restore: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    progress.close()
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        counts = ", ".join(f"{kind} {n:,}" for kind, n in result.restored.items())
        replayed = f"; replayed {result.replayed_events} events first" if result.replayed_events else ""
        print(f"dropgate restore: restored {counts} in {result.elapsed_s:.2f}s{replayed}")
    return 0


def _stores(runtime: Any) -> Stores:
    return runtime  # type: ignore[no-any-return]
