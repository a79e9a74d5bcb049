"""``dropgate reconcile`` and ``dropgate restore``: arguments, running, the printed report
(the logic: ``dropgate/persistence/reconcile/``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dropgate.cli.common import AddCommand, Invocation

if TYPE_CHECKING:
    from dropgate.persistence.reconcile.base import Drift
    from dropgate.persistence.reconcile.runner import Report, Stores


def register(add: AddCommand) -> None:
    add_reconcile_arguments(add("reconcile", "Compare Redis with PostgreSQL; report (and --repair) drift.",
                                run_reconcile))
    add_restore_arguments(add("restore", "Rebuild Redis from PostgreSQL after Redis was lost or flushed.",
                              run_restore))


async def run_reconcile(call: Invocation) -> int:
    import msgspec

    from dropgate.cli.stores import StoreUnavailable
    from dropgate.persistence.reconcile.runner import Report

    try:
        await call.wait_for_stores()
    except StoreUnavailable as exc:
        if call.args.json:  # --json promises a report on stdout, also when it could not run
            report = Report(result="error", exit_code=2, error=str(exc))
            sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
        raise
    return await reconcile_command(lambda: call.runtime(check=False), call.args)


async def run_restore(call: Invocation) -> int:
    await call.wait_for_stores()
    return await restore_command(lambda: call.runtime(check=False), call.args)


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
    import msgspec

    from dropgate.persistence.reconcile.runner import Report, reconcile
    from dropgate.progressbar import ProgressBar

    progress = ProgressBar(enabled=None if not args.no_progress else False, lines_off_tty=False, min_total=20_000)
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
    import msgspec

    from dropgate.persistence.reconcile.restore import KeyspaceNotEmpty, restore
    from dropgate.progressbar import ProgressBar

    progress = ProgressBar(lines_off_tty=False, min_total=20_000)
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


# -- the printed report ---------------------------------------------------------------

MAX_LINES = 50


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:5])
        value = f"[{shown}{', ...' if len(value) > 5 else ''}]"
    s = str(value)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def format_table(report: Report) -> str:
    if report.result == "error":
        return f"dropgate reconcile: could not run: {report.error}\nresult: ERROR (exit 2)"
    scope = f", tenant {report.tenant}" if report.tenant else ""
    out = [f"dropgate reconcile: prefix {report.key_prefix}, {report.partitions} partitions{scope}, "
           f"{report.elapsed_s:.2f}s", ""]
    header = ("domain", "entity", "checked", "members", "in flight", "drift")
    rows = [(c.domain, c.kind, f"{c.checked:,}", f"{c.members:,}" if c.members else "-",
             f"{c.in_flight:,}", f"{c.drift:,}") for c in report.counts]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs)

    out += [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    if report.drifts_before_repair:
        out += ["", f"drift found before repair: {len(report.drifts_before_repair)}"]
        out += _drift_lines(report.drifts_before_repair)
    if report.repairs:
        summary = ", ".join(f"{action} {n}" for action, n in sorted(report.repaired.items()))
        out += ["", f"repairs: {summary}"]
        out += [f"  {r.entity:<32} {r.action:<18} {r.detail}" for r in report.repairs[:MAX_LINES]]
        if len(report.repairs) > MAX_LINES:
            out.append(f"  ... and {len(report.repairs) - MAX_LINES} more (see --json)")
    if report.drifts:
        out += ["", "drift:" if not report.drifts_before_repair else "drift left after repair:"]
        out += _drift_lines(report.drifts)
    if report.in_flight:
        shown = ", ".join(report.in_flight[:5])
        out += ["", f"in flight (events the persister has not committed yet, not drift): {len(report.in_flight)}"
                    f"  {shown}{' ...' if len(report.in_flight) > 5 else ''}"]
    out += ["", f"persister backlog: {report.backlog:,} events; dead letters: {report.dead_letters}"]
    for dl in report.dead_letter_sample:
        out.append(f"  dead letter {dl.stream_id} p{dl.partition} {dl.event_type} {dl.entity} "
                   f"after {dl.attempts} attempts: {_short(dl.error, 80)}")
    if report.result == "agree":
        out.append("result: agree (exit 0)")
    else:
        entities = len({d.entity for d in report.drifts})
        out.append(f"result: DRIFT in {entities} entit{'y' if entities == 1 else 'ies'} (exit 1)"
                   + ("" if report.repairs else "; `dropgate reconcile --repair` applies the repair policy"))
    return "\n".join(out)


def _drift_lines(drifts: Sequence[Drift]) -> list[str]:
    lines = []
    for d in drifts[:MAX_LINES]:
        versions = ""
        if d.redis_version is not None or d.postgres_version is not None:
            versions = f" (v{d.redis_version if d.redis_version is not None else '-'} Redis, " \
                       f"v{d.postgres_version if d.postgres_version is not None else '-'} PostgreSQL)"
        lines.append(f"  {d.entity:<32} {d.field:<14} {d.problem:<20} {_short(d.detail, 70)}{versions}")
    if len(drifts) > MAX_LINES:
        lines.append(f"  ... and {len(drifts) - MAX_LINES} more (see --json)")
    return lines
