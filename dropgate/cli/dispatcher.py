"""``dropgate dispatcher``: only the webhook dispatcher (``dropgate serve`` runs one by
default). Several may run: they share the partitions by lease and the delivery queue
by row locks."""

from __future__ import annotations

from dropgate.cli.common import AddCommand, Invocation


def register(add: AddCommand) -> None:
    add("dispatcher", "Run only the webhook dispatcher.", run_dispatcher)


async def run_dispatcher(call: Invocation) -> int:
    from dropgate.workers import wait_for_signal

    async with call.runtime(run_persister=False, run_dispatcher=True, seal_secrets=True,
                            wait_s=call.settings.startup_wait_s) as runtime:
        assert runtime.dispatcher is not None
        print(f"dropgate: dispatcher {runtime.dispatcher.name} running", flush=True)
        await wait_for_signal()
    return 0
