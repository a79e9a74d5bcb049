"""The ``dropgate`` command: serve, demo, migrate, persister, keys, reconcile, restore.

Configuration comes from ``DROPGATE_*`` variables; flags override them. This is the
only place that reads the environment (STYLE.md, house rule 4).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import SETTINGS_HELP, Settings, env_name, from_env
from dropgate.workers import READY_PREFIX, WorkerFailed, effective_log_level, extra_workers, worker_env

log = logging.getLogger("dropgate")


def _settings_epilog() -> str:
    lines = ["configuration (environment variables):"]
    for field, text in SETTINGS_HELP.items():
        lines.append(f"  {env_name(field):<36} {text}")
    return "\n".join(lines)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="overrides DROPGATE_REDIS_URL")
    parser.add_argument("--database-url", help="overrides DROPGATE_DATABASE_URL")
    parser.add_argument("--data-dir", help="overrides DROPGATE_DATA_DIR")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "redis_url": getattr(args, "redis_url", None),
        "database_url": getattr(args, "database_url", None),
        "data_dir": getattr(args, "data_dir", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        **extra,
    }
    return from_env(os.environ, **overrides)


async def wait_for_signal() -> None:
    """Until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.asynccontextmanager
async def serving(runtime: Runtime, host: str, port: int, *, reuse_port: bool = False) -> Any:
    """Run the API on host:port for the duration of the block; yields the bound URL.
    ``reuse_port``: other processes may listen on the same port (``--workers``)."""
    from dropgate.http.app import create_app, tune_gc

    runner = web.AppRunner(create_app(runtime), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    await site.start()
    tune_gc()
    bound_port = runner.addresses[0][1] if runner.addresses else port
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()


async def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, persister_enabled=False if args.no_persister else None,
                         workers=args.workers)
    if settings.workers < 1:
        raise SystemExit(f"dropgate: invalid configuration: {env_name('workers')} (--workers) must be "
                         f"at least 1, not {settings.workers}")
    try:
        return await _serve(settings, reuse_port=settings.workers > 1 or args.reuse_port)
    except WorkerFailed as exc:
        print(f"dropgate: {exc}", file=sys.stderr)
        return 1


async def _serve(settings: Settings, *, reuse_port: bool) -> int:
    async with open_runtime(settings) as runtime, \
            serving(runtime, settings.host, settings.port, reuse_port=reuse_port) as url:
        env = worker_env(os.environ, runtime.redis_url, runtime.database_url, effective_log_level())
        port = int(url.rsplit(":", 1)[1])
        async with extra_workers(settings.workers - 1, settings.host, port, env) as workers:
            print(f"{READY_PREFIX}{url} (redis {runtime.redis_url}, "
                  f"persister {'on' if runtime.persister else 'off'}"
                  + (f", {settings.workers} workers" if settings.workers > 1 else "") + ")", flush=True)
            stop = asyncio.ensure_future(wait_for_signal())
            exited = asyncio.ensure_future(workers.first_exit())
            await asyncio.wait({stop, exited}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            exited.cancel()
            code = exited.result() if exited.done() and not exited.cancelled() else None
            failed = bool(code)  # 0: a worker signalled with this process (Ctrl-C reaches the group)
            if code is not None:
                (log.error if failed else log.info)("a worker exited (code %s): stopping the server", code)
            print("dropgate: shutting down", flush=True)
    return 1 if failed else 0


async def cmd_persister(args: argparse.Namespace) -> int:
    settings = _settings(args, persister_enabled=True)
    async with open_runtime(settings, run_persister=True) as runtime:
        assert runtime.persister is not None
        print(f"dropgate: persister {runtime.persister.name} running", flush=True)
        await wait_for_signal()
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with open_runtime(settings, run_persister=False) as runtime:
        rows = await runtime.pool.fetch("SELECT name FROM dg_schema_migrations ORDER BY version")
        print("applied migrations: " + ", ".join(r["name"] for r in rows))
    return 0


async def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with open_runtime(settings, run_persister=False) as runtime:
        if args.keys_command == "create":
            if args.role == "service":
                if not args.tenant:
                    print("dropgate: --tenant is required for a service key", file=sys.stderr)
                    return 2
                if not await runtime.tenants.exists(args.tenant):
                    print(f"dropgate: no tenant {args.tenant!r}", file=sys.stderr)
                    return 2
            key_id, token = await runtime.api_keys.create(role=args.role, tenant_id=args.tenant)
            print(f"key_id: {key_id}\nkey:    {token}\n(the key is shown once)")
        else:
            await runtime.api_keys.revoke(args.key_id)
            print(f"revoked {args.key_id}")
    return 0


async def cmd_codes(args: argparse.Namespace) -> int:
    from dropgate.codes_cli import summary, upload_file
    from dropgate.errors import DropgateError
    from dropgate.progressbar import ProgressBar

    bar = ProgressBar(f"upload {Path(args.file).name}", unit=" B")
    sizes = [0, 0]

    def progress(done: int, total: int) -> None:
        sizes[:] = [done, total]
        bar.update(done, total)

    async with open_runtime(_settings(args), run_persister=not args.no_wait) as runtime:
        try:
            result = await upload_file(runtime, args.tenant, args.file, args.campaign, args.type,
                                       progress=progress)
        except (DropgateError, FileNotFoundError) as exc:
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


async def cmd_promos(args: argparse.Namespace) -> int:
    from dropgate import promos_cli

    async with open_runtime(_settings(args), run_persister=False) as runtime:
        return await promos_cli.run_stats(runtime, args.tenant, args.code, as_json=args.json)


async def cmd_demo(args: argparse.Namespace) -> int:
    from dropgate.demo.runner import run_demo

    settings = _settings(args, persister_enabled=True)
    return await run_demo(settings, exit_after=args.exit, scale=args.scale)


# -- reconcile and restore (logic: dropgate/persistence/reconcile/) -----------------------
async def cmd_reconcile(args: argparse.Namespace) -> int:
    from dropgate.persistence.reconcile.command import reconcile_command

    return await reconcile_command(lambda: open_runtime(_settings(args), run_persister=False), args)


async def cmd_restore(args: argparse.Namespace) -> int:
    from dropgate.persistence.reconcile.command import restore_command

    return await restore_command(lambda: open_runtime(_settings(args), run_persister=False), args)
# -- end reconcile and restore -----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropgate", description="High-traffic drops that cannot oversell, double-redeem or drift.",
        epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default=None, help="overrides DROPGATE_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=_settings_epilog(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(p)
        return p

    serve = command("serve", "Run the HTTP API and (by default) the persister.")
    serve.add_argument("--host", help="overrides DROPGATE_HOST")
    serve.add_argument("--port", type=int, help="overrides DROPGATE_PORT")
    serve.add_argument("--no-persister", action="store_true", help="do not run the persister in-process")
    serve.add_argument("--workers", type=int, help="overrides DROPGATE_WORKERS")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers

    demo = command("demo", "Start the stack, drive a crowd against every domain, print a summary.")
    demo.add_argument("--host", help="overrides DROPGATE_HOST")
    demo.add_argument("--port", type=int, help="overrides DROPGATE_PORT (0 picks a free port)")
    demo.add_argument("--exit", action="store_true", help="stop after the summary instead of serving")
    demo.add_argument("--scale", type=float, default=1.0, help="multiply crowd sizes (default 1)")

    command("migrate", "Apply PostgreSQL migrations.")
    command("persister", "Run only the write-behind persister.")

    keys = command("keys", "Create or revoke API keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--role", choices=["admin", "service"], required=True)
    create.add_argument("--tenant", help="the tenant of a service key")
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")

    codes = command("codes", "Campaign code pools.")
    codes_sub = codes.add_subparsers(dest="codes_command", required=True)
    upload = codes_sub.add_parser("upload", help="upload a file of codes (one per line), streamed in batches")
    upload.add_argument("file")
    upload.add_argument("--tenant", required=True, help="the tenant that owns the campaign")
    upload.add_argument("--campaign", required=True)
    upload.add_argument("--type", required=True, help="code type, e.g. tm or external")
    upload.add_argument("--no-wait", action="store_true", help="do not wait until PostgreSQL has every code")

    from dropgate import promos_cli

    promos = command("promos", "Inspect promo codes.")
    promos_sub = promos.add_subparsers(dest="promos_command", required=True)
    promos_cli.add_stats_arguments(promos_sub.add_parser("stats", help="Redis and PostgreSQL side by side"))

    from dropgate.persistence.reconcile.command import add_reconcile_arguments, add_restore_arguments

    add_reconcile_arguments(command("reconcile", "Compare Redis with PostgreSQL; report (and --repair) drift."))
    add_restore_arguments(command("restore", "Rebuild Redis from PostgreSQL after Redis was lost or flushed."))
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "serve": cmd_serve,
    "demo": cmd_demo,
    "migrate": cmd_migrate,
    "persister": cmd_persister,
    "keys": cmd_keys,
    "promos": cmd_promos,
    "codes": cmd_codes,
    "reconcile": cmd_reconcile,
    "restore": cmd_restore,
}


def event_loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, int]], int]:
    """``asyncio.run`` on the chosen loop. uvloop (libuv) makes each request's socket
    work and task switches cheaper: measured +25% no-op requests/s and +10% offer
    purchases/s per process (BENCHMARKS.md)."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise SystemExit(f"dropgate: invalid configuration: {env_name('event_loop')} must be "
                         f"auto, uvloop or asyncio, not {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit(f"dropgate: {env_name('event_loop')}=uvloop but uvloop is not "
                                 "installed (pip install uvloop)") from None
        else:
            return uvloop.run
    return asyncio.run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or os.environ.get(env_name("log_level")) or "INFO"
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        return event_loop_runner(os.environ.get(env_name("event_loop")) or "auto")(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error, not a traceback, for known failures
        from dropgate.errors import DropgateError

        if isinstance(exc, DropgateError | OSError):
            print(f"dropgate: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
