"""``dropgate demo``: the stack, a crowd against every domain, a summary (``dropgate/demo/``)."""

from __future__ import annotations

from dropgate.cli.common import AddCommand, Invocation


def register(add: AddCommand) -> None:
    demo = add("demo", "Start the stack, drive a crowd against every domain, print a summary.", run)
    demo.add_argument("--host", dest="host", help="overrides DROPGATE_HOST")
    demo.add_argument("--port", dest="port", help="overrides DROPGATE_PORT (0 picks a free port)")
    demo.add_argument("--exit", action="store_true", help="stop after the summary instead of serving")
    demo.add_argument("--scale", type=float, default=1.0, help="multiply crowd sizes (default 1)")
    demo.set_defaults(persister_enabled=True)


async def run(call: Invocation) -> int:
    from dropgate.demo.runner import run_demo

    await call.wait_for_stores()
    return await run_demo(call.settings, exit_after=call.args.exit, scale=call.args.scale)
