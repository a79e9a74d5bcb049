"""``dropgate serve``: the API (``--workers N`` processes on one port) and, by default,
the persister; ``dropgate persister``: only the persister."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys

from dropgate.cli.common import AddCommand, Invocation
from dropgate.settings import Settings

log = logging.getLogger("dropgate")


def register(add: AddCommand) -> None:
    serve = add("serve", "Run the HTTP API and (by default) the persister.", run_serve)
    serve.add_argument("--host", dest="host", help="overrides DROPGATE_HOST")
    serve.add_argument("--port", dest="port", help="overrides DROPGATE_PORT")
    serve.add_argument("--no-persister", dest="persister_enabled", action="store_const", const=False,
                       help="do not run the persister in-process (DROPGATE_PERSISTER_ENABLED=false)")
    serve.add_argument("--no-dispatcher", dest="dispatcher_enabled", action="store_const", const=False,
                       help="do not run the webhook dispatcher in-process (DROPGATE_DISPATCHER_ENABLED=false)")
    serve.add_argument("--workers", dest="workers", help="overrides DROPGATE_WORKERS")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers
    serve.add_argument("--parent-fd", type=int, default=None, help=argparse.SUPPRESS)  # its lifeline
    serve.add_argument("--admission-fd", type=int, default=None, help=argparse.SUPPRESS)  # its board
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)  # its slot there

    persister = add("persister", "Run only the write-behind persister.", run_persister)
    persister.set_defaults(persister_enabled=True)


async def run_serve(call: Invocation) -> int:
    from dropgate.checkout.payments.factory import require_provider
    from dropgate.workers import WorkerFailed

    settings = call.settings
    require_provider(settings)  # before the stores: a server must never sell by default
    if settings.workers > 1 and not call.args.reuse_port:
        _shared_metrics_dir(settings)
    try:
        return await _serve(call, settings, reuse_port=settings.workers > 1 or call.args.reuse_port)
    except WorkerFailed as exc:
        print(f"dropgate: {exc}", file=sys.stderr)
        return 1


def _shared_metrics_dir(settings: Settings) -> None:
    """The first process of ``--workers N``: a fresh PROMETHEUS_MULTIPROC_DIR (emptied:
    files of an earlier run would add their counts to this one's) that the workers
    inherit, set before prometheus_client is imported so every process writes to it."""
    if "prometheus_client" in sys.modules:  # values already bound to this process
        log.warning("metrics: prometheus_client was imported before serve; /metrics is per worker")
        return
    folder = settings.data_path() / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


async def _serve(call: Invocation, settings: Settings, *, reuse_port: bool) -> int:
    from dropgate.http.admission import Board
    from dropgate.http.app import serving
    from dropgate.workers import (
        READY_PREFIX,
        die_with_parent,
        effective_log_level,
        extra_workers,
        wait_for_signal,
        watch_parent,
        worker_env,
    )

    parent_fd: int | None = call.args.parent_fd
    if parent_fd is not None:
        die_with_parent()
    board: Board | None = None  # the processes' shared admission board (http/admission.py)
    if call.args.admission_fd is not None:
        board = Board.attach(call.args.admission_fd, call.args.worker_index)
    elif settings.workers > 1 and settings.tenant_admission_shared:
        board = Board.create(settings.workers)
    async with call.runtime(run_persister=None, run_dispatcher=None, seal_secrets=True,
                            wait_s=settings.startup_wait_s) as runtime, \
            serving(runtime, settings.host, settings.port, reuse_port=reuse_port, board=board) as url:
        env = worker_env(os.environ, runtime.redis_url, runtime.database_url, effective_log_level())
        port = int(url.rsplit(":", 1)[1])
        async with extra_workers(settings.workers - 1, settings.host, port, env,
                                 board_fd=board.fd if board is not None else None) as workers:
            provider = runtime.purchases.provider.name
            print(f"{READY_PREFIX}{url} (payments {provider}, redis {runtime.redis_url}, "
                  f"persister {'on' if runtime.persister else 'off'}, "
                  f"dispatcher {'on' if runtime.dispatcher else 'off'}"
                  + (f", {settings.workers} workers" if settings.workers > 1 else "") + ")", flush=True)
            if provider == "sandbox":
                print("dropgate: WARNING: payment provider 'sandbox': nothing is charged; anyone can "
                      "'pay' a purchase on its checkout page (DROPGATE_PAYMENT_PROVIDER=stripe for real "
                      "payments)", file=sys.stderr, flush=True)
            stop = asyncio.ensure_future(wait_for_signal())
            exited = asyncio.ensure_future(workers.first_exit())
            orphaned = asyncio.ensure_future(
                watch_parent(parent_fd) if parent_fd is not None else asyncio.Event().wait())
            await asyncio.wait({stop, exited, orphaned}, return_when=asyncio.FIRST_COMPLETED)
            for waiting in (stop, exited, orphaned):
                waiting.cancel()
            code = exited.result() if exited.done() and not exited.cancelled() else None
            failed = bool(code)  # 0: a worker signalled with this process (Ctrl-C reaches the group)
            if code is not None:
                (log.error if failed else log.info)("a worker exited (code %s): stopping the server", code)
            if orphaned.done() and not orphaned.cancelled():
                log.error("the first process of this server is gone: stopping this worker")
                failed = True
            print("dropgate: shutting down", flush=True)
    return 1 if failed else 0


async def run_persister(call: Invocation) -> int:
    from dropgate.gcsettings import tune_gc
    from dropgate.workers import wait_for_signal

    async with call.runtime(run_persister=True, wait_s=call.settings.startup_wait_s) as runtime:
        assert runtime.persister is not None and runtime.persister_task is not None
        tune_gc()  # a batch of events is thousands of objects: the default collects every few hundred
        print(f"dropgate: persister {runtime.persister.name} running", flush=True)
        signalled = asyncio.ensure_future(wait_for_signal())
        await asyncio.wait({signalled, runtime.persister_task}, return_when=asyncio.FIRST_COMPLETED)
        if not signalled.done():
            # The persister's loop ended by itself (it only ends on close()): exit
            # non-zero so that a supervisor starts a fresh one, rather than linger
            # alive with nothing persisted.
            signalled.cancel()
            print("dropgate: the persister stopped; exiting", file=sys.stderr, flush=True)
            return 1
    return 0
