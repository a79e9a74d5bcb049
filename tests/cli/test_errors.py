"""Configuration errors and unreachable stores: one line on stderr naming the variable,
exit status 2 in every subcommand, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dropgate.cli import main
from dropgate.embedded import Endpoints

DROPGATE = [sys.executable, "-m", "dropgate"]
CLOSED_REDIS = "redis://127.0.0.1:1/0"

# one invocation per subcommand, valid but for the settings under test
INVOCATIONS = [
    ["serve"], ["demo", "--exit"], ["migrate"], ["persister"], ["keys", "create", "--role", "admin"],
    ["codes", "upload", "codes.csv", "--tenant", "t", "--campaign", "c", "--type", "tm"],
    ["promos", "stats", "CODE", "--tenant", "t"], ["reconcile"], ["restore"],
]


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    return env | {"DROPGATE_DATA_DIR": str(data_dir)} | settings


def _run(argv: list[str], env: dict[str, str], timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DROPGATE, *argv], env=env, capture_output=True, text=True, timeout=timeout_s)


def test_bad_port_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = _run(["serve"], _env(tmp_path, DROPGATE_PORT="abc"))
    assert result.returncode == 2
    assert result.stderr == "dropgate: DROPGATE_PORT must be an integer from 0 to 65535, got 'abc'\n"
    assert result.stdout == ""


def test_bad_log_level_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = _run(["reconcile"], _env(tmp_path, DROPGATE_LOG_LEVEL="loud"))
    assert result.returncode == 2
    assert result.stderr == ("dropgate: DROPGATE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
                             "got 'loud'\n")


def test_a_bad_flag_value_names_the_flag_too(tmp_path: Path) -> None:
    result = _run(["--log-level", "chatty", "serve", "--port", "70000"], _env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("dropgate: ")
    assert "(--log-level)" in result.stderr or "(--port)" in result.stderr


@pytest.mark.parametrize("argv", INVOCATIONS, ids=lambda argv: argv[0])
@pytest.mark.parametrize("setting", [("DROPGATE_PORT", "abc"), ("DROPGATE_LOG_LEVEL", "loud"),
                                     ("DROPGATE_PARTITIONS", "0"), ("DROPGATE_PERSISTER_ENABLED", "maybe")])
def test_the_same_configuration_error_is_exit_2_everywhere(
        argv: list[str], setting: tuple[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Every setting is parsed before any command runs, so any bad one stops any command."""
    for name in [k for k in os.environ if k.startswith("DROPGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DROPGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DROPGATE_REDIS_URL", CLOSED_REDIS)  # should the command run after all, it stops at once
    monkeypatch.setenv("DROPGATE_DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
    monkeypatch.setenv(*setting)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dropgate: {setting[0]} must be ") and err.count("\n") == 1, err


def test_a_closed_redis_port_is_retried_then_one_line(tmp_path: Path, servers: Endpoints) -> None:
    env = _env(tmp_path, DROPGATE_REDIS_URL=CLOSED_REDIS, DROPGATE_DATABASE_URL=servers.database_url,
               DROPGATE_STARTUP_WAIT_S="1", DROPGATE_PAYMENT_PROVIDER="sandbox")
    result = _run(["serve", "--port", "0"], env)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1] == f"dropgate: Redis at {CLOSED_REDIS} (DROPGATE_REDIS_URL): connection refused"
    attempts = [int(n) for n in re.findall(r"connection refused \(attempt (\d+);", result.stderr)]
    assert len(attempts) > 1 and attempts == list(range(1, len(attempts) + 1))
    assert "giving up" in lines[-2]
    assert "Traceback" not in result.stderr


def test_a_command_that_does_not_wait_asks_once(tmp_path: Path, servers: Endpoints) -> None:
    env = _env(tmp_path, DROPGATE_REDIS_URL=servers.redis_url, DROPGATE_DATABASE_URL="postgresql://u@127.0.0.1:1/db",
               DROPGATE_STARTUP_WAIT_S="5")  # read by serve and persister only
    result = _run(["migrate"], env)
    assert result.returncode == 2
    assert result.stderr == ("dropgate: PostgreSQL at postgresql://u@127.0.0.1:1/db (DROPGATE_DATABASE_URL): "
                             "connection refused\n")


def test_a_flag_url_is_named_as_the_flag(tmp_path: Path, servers: Endpoints) -> None:
    result = _run(["promos", "--redis-url", "redis://:secret@127.0.0.1:1/0", "--database-url",
                   servers.database_url, "stats", "CODE", "--tenant", "t"], _env(tmp_path))
    assert result.returncode == 2
    assert result.stderr == "dropgate: Redis at redis://:***@127.0.0.1:1/0 (--redis-url): connection refused\n"


def test_reconcile_json_still_reports_on_stdout(tmp_path: Path, servers: Endpoints) -> None:
    env = _env(tmp_path, DROPGATE_REDIS_URL=CLOSED_REDIS, DROPGATE_DATABASE_URL=servers.database_url)
    result = _run(["reconcile", "--json"], env)
    assert result.returncode == 2
    assert '"result":"error"' in result.stdout and "connection refused" in result.stdout
    assert result.stderr == f"dropgate: Redis at {CLOSED_REDIS} (DROPGATE_REDIS_URL): connection refused\n"
