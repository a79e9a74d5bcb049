"""``dropgate migrate``: apply PostgreSQL migrations (every start applies them too)."""

from __future__ import annotations

from dropgate.cli.common import AddCommand, Invocation


def register(add: AddCommand) -> None:
    add("migrate", "Apply PostgreSQL migrations.", run)


async def run(call: Invocation) -> int:
    async with call.runtime() as runtime:
        rows = await runtime.pool.fetch("SELECT name FROM dg_schema_migrations ORDER BY version")
        print("applied migrations: " + ", ".join(r["name"] for r in rows))
    return 0
