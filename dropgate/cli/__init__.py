"""The ``dropgate`` command: one module per subcommand group, wired together here.

Configuration comes from ``DROPGATE_*`` variables; a flag whose ``dest`` is a setting
overrides its variable. This package is the only place that reads the environment
(docs/design.md, house rule 4), and nothing in dropgate imports it: it imports the rest.

Exit status, the same in every subcommand: 0 done; 1 the command ran and found or met
a problem (drift, a refused upload or restore, a worker that died); 2 it could not
run (usage, configuration, a store that does not answer, an unknown tenant or file);
130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dropgate import __version__
from dropgate.cli.common import Handler, add_store_flags, from_args, setting_flags, settings_epilog
from dropgate.settings import EVERY, SETTINGS, ConfigError, settings_read_by

#: what `pip install dropgate` (the client alone) lacks and `dropgate[server]` brings
SERVER_MODULES = frozenset({"redis", "asyncpg", "aioboto3", "stripe", "prometheus_client", "uvloop"})

EXIT_STATUS = ("exit status: 0 done, 1 the command found or met a problem (drift, a refused upload), "
               "2 could not run\n(usage, configuration, a store that does not answer), 130 interrupted.")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each one's ``--help`` lists the settings it reads."""
    common = [s for s in SETTINGS if s.read_by >= EVERY]
    parser = argparse.ArgumentParser(
        prog="dropgate", description="High-traffic drops that cannot oversell, double-redeem or drift.",
        epilog=settings_epilog(common, "settings every command reads (environment variables; "
                               "`dropgate COMMAND --help` lists all of a command's):") + "\n\n" + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dropgate {__version__}")
    parser.add_argument("--log-level", dest="log_level", help="overrides DROPGATE_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=settings_epilog(settings_read_by(name), "settings (environment variables; "
                                                  "a flag overrides its variable):"),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_store_flags(p)
        p.set_defaults(handler=handler, command_parser=p)
        return p

    # the subcommands import the server's libraries: only here, so that `dropgate --version`
    # works on a client-only install
    from dropgate.cli import (
        codes,
        demo,
        dispatcher,
        keys,
        migrate,
        promos,
        purchases,
        reconcile,
        serve,
        webhooks,
    )

    for group in (serve, dispatcher, demo, migrate, keys, codes, promos, purchases, reconcile, webhooks):
        group.register(add)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _fail(message: object) -> int:
    print(f"dropgate: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        print(f"dropgate {__version__}")
        return 0
    try:
        parser = build_parser()
    except ModuleNotFoundError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        return _fail(f"the dropgate command needs the server's libraries ({exc.name} is missing): "
                     "pip install 'dropgate[server]'")
    args = parser.parse_args(argv)
    try:
        call = from_args(args, setting_flags(parser, args.command_parser))
    except ConfigError as exc:
        return _fail(exc)
    _configure_logging(call.settings.log_level)

    from dropgate.checkout.payments.base import ProviderConfigError
    from dropgate.cli.loop import event_loop_runner
    from dropgate.cli.stores import StoreUnavailable
    from dropgate.errors import DropgateError

    try:
        return event_loop_runner(call.settings.event_loop)(args.handler(call))
    except KeyboardInterrupt:
        return 130
    except (ConfigError, ProviderConfigError, StoreUnavailable) as exc:
        return _fail(exc)
    except (DropgateError, OSError) as exc:  # a known failure: one line, not a traceback
        return _fail(exc)

