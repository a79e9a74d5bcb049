"""No warning from any ``dropgate`` command on a clean install, ``XDG_RUNTIME_DIR`` unset
included: pgserver asks platformdirs for the runtime dir when it is imported, and
``dropgate.embedded`` names it explicitly instead of letting platformdirs warn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

IMPORT_PGSERVER = ("import os; from dropgate.embedded import import_pgserver; "
                   "server = import_pgserver().PostgresServer; "
                   "print(server.runtime_path, os.environ.get('XDG_RUNTIME_DIR'))")


def _no_xdg(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR" and not k.startswith("DROPGATE_")}
    return env | {"TMPDIR": str(tmp)}


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["reconcile", "--help"], ["--version"]])
def test_commands_print_no_warning(argv: list[str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "dropgate", *argv], env=_no_xdg(tmp_path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.parametrize("existing_mode", [None, 0o755])
def test_pgserver_imports_without_warning(existing_mode: int | None, tmp_path: Path) -> None:
    """Fresh, or left 0755 by an older platformdirs: the runtime dir platformdirs would
    fall back to, made 0700, and the variable gone again afterwards."""
    fallback = tmp_path / f"runtime-{os.geteuid()}"
    if existing_mode is not None:
        fallback.mkdir()
        fallback.chmod(existing_mode)
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_PGSERVER], env=_no_xdg(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{fallback}/python_PostgresServer None\n"
    assert oct(fallback.stat().st_mode & 0o777) == oct(0o700)


def test_a_configured_runtime_dir_is_left_alone(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = _no_xdg(tmp_path) | {"XDG_RUNTIME_DIR": str(runtime)}
    result = subprocess.run([sys.executable, "-W", "error", "-c", IMPORT_PGSERVER], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{runtime}/python_PostgresServer {runtime}\n"
