"""What every subcommand shares: its parser (store flags, the settings it reads in
``--help``), the settings it runs with, and opening the stores."""

from __future__ import annotations

import argparse
import contextlib
import os
import textwrap
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dropgate.settings import SettingInfo, Settings, env_name, format_default, from_env

if TYPE_CHECKING:
    from dropgate.runtime import Runtime

_NAME_WIDTH = 34
_LINE_WIDTH = 100


@dataclass(frozen=True)
class Invocation:
    """One run of a subcommand: its arguments, its settings, and which flags set which."""

    args: argparse.Namespace
    settings: Settings
    flags: Mapping[str, str]  # setting field -> the flag that overrode it (``--port``)

    def source(self, field: str) -> str:
        """Where a setting came from, for messages: ``DROPGATE_PORT`` or ``--port``."""
        return self.flags.get(field) or env_name(field)

    async def wait_for_stores(self, *, wait_s: float = 0.0) -> None:
        """Until the configured stores answer (once when ``wait_s`` is 0); raises
        ``StoreUnavailable``."""
        from dropgate.cli.stores import wait_for_stores

        await wait_for_stores(self.settings.redis_url, self.settings.database_url, wait_s=wait_s,
                              sources=(self.source("redis_url"), self.source("database_url")))

    @contextlib.asynccontextmanager
    async def runtime(self, *, run_persister: bool | None = False, wait_s: float = 0.0,
                      check: bool = True, run_dispatcher: bool | None = False,
                      seal_secrets: bool = False) -> AsyncIterator[Runtime]:
        """The stores, checked first (so that one not answering is a one-line error; ``check``
        False: the caller has), then opened; ``seal_secrets`` for the commands that read
        DROPGATE_SECRET_KEY (webhooks/sealing.py)."""
        from dropgate.runtime import open_runtime

        if check:
            await self.wait_for_stores(wait_s=wait_s)
        async with open_runtime(self.settings, run_persister=run_persister,
                                run_dispatcher=run_dispatcher, seal_secrets=seal_secrets) as runtime:
            yield runtime


Handler = Callable[[Invocation], Coroutine[Any, Any, int]]
AddCommand = Callable[[str, str, Handler], argparse.ArgumentParser]


def settings_epilog(settings: Iterable[SettingInfo], title: str) -> str:
    """``--help``'s list of settings: variable, meaning, default."""
    lines = [title]
    for info in settings:
        said = info.default is None and "Unset:" in info.help  # the help says what unset means
        text = info.help if said else f"{info.help} Default: {format_default(info.default)}."
        wrapped = textwrap.wrap(text, _LINE_WIDTH - _NAME_WIDTH - 2) or [""]
        lines.append(f"  {info.env:<{_NAME_WIDTH - 1}} {wrapped[0]}".rstrip())
        lines += [" " * (_NAME_WIDTH + 2) + more for more in wrapped[1:]]
    return "\n".join(lines)


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    """Flags whose ``dest`` is a setting override it (``from_args``)."""
    parser.add_argument("--redis-url", dest="redis_url", help="overrides DROPGATE_REDIS_URL")
    parser.add_argument("--database-url", dest="database_url", help="overrides DROPGATE_DATABASE_URL")
    parser.add_argument("--data-dir", dest="data_dir", help="overrides DROPGATE_DATA_DIR")


def setting_flags(*parsers: argparse.ArgumentParser) -> dict[str, str]:
    """setting field -> the flag of ``parsers`` that overrides it."""
    from dropgate.settings import SETTINGS

    fields = {s.field for s in SETTINGS}
    return {action.dest: action.option_strings[-1] for parser in parsers for action in parser._actions
            if action.dest in fields and action.option_strings}


def from_args(args: argparse.Namespace, flags: Mapping[str, str],
              environ: Mapping[str, str] = os.environ) -> Invocation:
    """Settings from ``DROPGATE_*``, then the flags given (and ``set_defaults`` values);
    raises ``ConfigError``."""
    from dropgate.settings import SETTINGS

    overrides = {s.field: getattr(args, s.field) for s in SETTINGS if getattr(args, s.field, None) is not None}
    given = {field: flag for field, flag in flags.items() if field in overrides}
    settings = from_env(environ, sources=given, **overrides)
    return Invocation(args=args, settings=settings, flags=given)
