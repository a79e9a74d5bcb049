"""``dropgate --version``, ``python -m dropgate``, and each subcommand's ``--help`` listing
the settings it reads (from the metadata on ``Settings``), with their defaults."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dropgate
from dropgate.cli import build_parser, main
from dropgate.settings import COMMANDS, SETTINGS, format_default, settings_read_by

PACKAGE = Path(dropgate.__file__).parent


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def _listed(text: str) -> dict[str, str]:
    """Setting name -> its entry (wrapped lines joined) in a --help epilog."""
    entries: dict[str, str] = {}
    for match in re.finditer(r"^  (DROPGATE_[A-Z0-9_]+) +(.*(?:\n {20,}.*)*)", text, re.MULTILINE):
        entries[match.group(1)] = " ".join(match.group(2).split())
    return entries


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"dropgate {dropgate.__version__}\n"


def test_python_m_dropgate() -> None:
    result = subprocess.run([sys.executable, "-m", "dropgate", "--version"], capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"dropgate {dropgate.__version__}\n", "")


def test_every_subcommand_is_described_and_every_description_names_a_subcommand() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert subcommands is not None and set(subcommands) == set(COMMANDS)
    for setting in SETTINGS:
        assert setting.read_by and setting.read_by <= set(COMMANDS), setting.env
        assert setting.help, setting.env


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_the_settings_the_command_reads_with_defaults(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    listed = _listed(_help(capsys, command))
    expected = settings_read_by(command)
    assert list(listed) == [s.env for s in expected]
    for setting in expected:
        entry = listed[setting.env]
        if setting.default is None and "Unset:" in setting.help:
            assert "Unset:" in entry, entry
        else:
            assert f"Default: {format_default(setting.default)}." in entry, entry


def test_help_is_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    serve = _listed(_help(capsys, "serve"))
    reconcile = _listed(_help(capsys, "reconcile"))
    persister = _listed(_help(capsys, "persister"))
    assert serve["DROPGATE_PORT"] == "HTTP port (0: any free port). Default: 8080."
    assert "DROPGATE_STARTUP_WAIT_S" in serve and "DROPGATE_STARTUP_WAIT_S" in persister
    assert "DROPGATE_PORT" not in reconcile and "DROPGATE_STARTUP_WAIT_S" not in reconcile
    assert "DROPGATE_PORT" not in persister and "DROPGATE_WORKERS" not in persister
    assert "DROPGATE_REDIS_URL" in reconcile and "DROPGATE_MAX_BACKLOG" in reconcile
    # a nested subcommand lists its group's settings
    assert _listed(_help(capsys, "keys", "create")) == _listed(_help(capsys, "keys"))


def test_top_level_help_lists_what_every_command_reads(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    listed = _listed(text)
    assert "DROPGATE_LOG_LEVEL" in listed and "DROPGATE_REDIS_URL" in listed
    assert "DROPGATE_PORT" not in listed
    assert "exit status: 0 done" in text


def test_nothing_in_dropgate_imports_the_cli() -> None:
    """The CLI imports the demo, the runtime and the rest; none of them imports it back."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli" or relative == Path("__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) and node.module else [])
            offenders += [f"{relative}: {n}" for n in names if n == "dropgate.cli" or n.startswith("dropgate.cli.")]
    assert offenders == []
