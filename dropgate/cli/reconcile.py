"""``dropgate reconcile`` and ``dropgate restore`` (the logic: ``dropgate/persistence/reconcile/``)."""

from __future__ import annotations

import sys

from dropgate.cli.common import AddCommand, Invocation


def register(add: AddCommand) -> None:
    from dropgate.persistence.reconcile.command import add_reconcile_arguments, add_restore_arguments

    add_reconcile_arguments(add("reconcile", "Compare Redis with PostgreSQL; report (and --repair) drift.",
                                run_reconcile))
    add_restore_arguments(add("restore", "Rebuild Redis from PostgreSQL after Redis was lost or flushed.",
                              run_restore))


async def run_reconcile(call: Invocation) -> int:
    import msgspec

    from dropgate.cli.stores import StoreUnavailable
    from dropgate.persistence.reconcile.command import reconcile_command
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
    from dropgate.persistence.reconcile.command import restore_command

    await call.wait_for_stores()
    return await restore_command(lambda: call.runtime(check=False), call.args)
