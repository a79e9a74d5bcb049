"""The command line and the README's `make demo` path, run as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dropgate.runtime import open_runtime
from dropgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DROPGATE = [sys.executable, "-m", "dropgate"]


def _clean_env(data_dir: Path) -> dict[str, str]:
    """No URLs configured: the commands must start (or attach to) embedded servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    env["DROPGATE_DATA_DIR"] = str(data_dir)
    env["DROPGATE_LOG_LEVEL"] = "WARNING"
    env["DROPGATE_PAYMENT_PROVIDER"] = "sandbox"  # the suite chooses the sandbox itself
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_serve_help_lists_the_configuration() -> None:
    out = subprocess.run([*DROPGATE, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("DROPGATE_REDIS_URL", "DROPGATE_DATABASE_URL", "DROPGATE_ADMIN_KEY",
                 "DROPGATE_DATA_DIR", "DROPGATE_PARTITIONS", "DROPGATE_HOST", "DROPGATE_PORT"):
        assert name in out


def test_bad_configuration_is_a_clear_error(embedded_dir: Path) -> None:
    env = _clean_env(embedded_dir) | {"DROPGATE_PORT": "eighty"}
    result = subprocess.run([*DROPGATE, "migrate"], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr == "dropgate: DROPGATE_PORT must be an integer from 0 to 65535, got 'eighty'\n"


@pytest.mark.slow
def test_serve_on_embedded_servers_and_a_second_process_attaches(embedded_dir: Path) -> None:
    port = _free_port()
    env = _clean_env(embedded_dir / "data")
    server = subprocess.Popen([*DROPGATE, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        # a second process with the same data dir attaches to the same servers
        created = subprocess.run([*DROPGATE, "keys", "create", "--role", "admin"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr
        token = next(line.split()[-1] for line in created.stdout.splitlines() if line.startswith("key:"))
        status, body = _get(f"http://127.0.0.1:{port}/v1/tenants/nobody", token)
        assert (status, body["code"]) == (404, "NOT_FOUND")  # the server knows the new key
        assert len(list((embedded_dir / "data").glob("redis/redis.pid"))) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert server.returncode == 0


@pytest.mark.slow
def test_make_demo_runs_on_embedded_servers(embedded_dir: Path) -> None:
    """The README's first command, far enough to prove the embedded servers start and serve."""
    env = _clean_env(embedded_dir / "data")
    env["ARGS"] = "--exit --port 0 --scale 0.05"
    result = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "service key:" in out and "API:" in out
    assert "oversell" in out and "PostgreSQL == Redis" in out
    webhooks = next(line for line in out.splitlines() if line.startswith("webhooks:"))
    assert "invite.redeemed" in webhooks and webhooks.endswith("all verified"), webhooks
    assert "FAILED" not in out
    assert "Warning" not in result.stderr  # e.g. platformdirs' XDG_RUNTIME_DIR one when pgserver starts
    assert (embedded_dir / "data" / "postgres").is_dir() and (embedded_dir / "data" / "redis").is_dir()


@pytest.mark.slow
def test_codes_upload_command(embedded_dir: Path) -> None:
    """``dropgate codes upload`` streams a file in batches and waits until PostgreSQL has it."""
    env = _clean_env(embedded_dir / "data") | {"DROPGATE_CODE_UPLOAD_BATCH_SIZE": "1000"}
    codes = embedded_dir / "codes.csv"
    codes.write_text("".join(f"  CODE{i}  \n" for i in range(2500)) + "\n\nCODE1\n")
    tenant = subprocess.run([*DROPGATE, "keys", "create", "--role", "service", "--tenant", "nobody", "--name", "ops"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert tenant.returncode == 2 and "no tenant" in tenant.stderr
    result = subprocess.run([*DROPGATE, "codes", "upload", str(codes), "--tenant", "nobody",
                             "--campaign", "launch", "--type", "tm"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "No tenant" in result.stderr  # what the command named is not there

    settings = Settings(data_dir=str(embedded_dir / "data"), persister_enabled=False)

    async def make_tenant() -> None:
        async with open_runtime(settings, run_persister=False) as rt:
            await rt.tenants.create("shop", name="shop", status="active", trial_end_ms=None)

    asyncio.run(make_tenant())
    result = subprocess.run([*DROPGATE, "codes", "upload", str(codes), "--tenant", "shop",
                             "--campaign", "launch", "--type", "tm"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "in 2,501  inserted 2,500  updated 0  skipped 1" in result.stdout
    assert "upload codes.csv [" in result.stderr  # the progress bar

    async def counts() -> tuple[int, int]:
        async with open_runtime(settings, run_persister=False) as rt:
            pg = await rt.pool.fetchval("SELECT count(*) FROM campaign_codes WHERE tenant_id = 'shop'")
            available = (await rt.codes.count("shop", "launch", "tm")).available
            return int(pg), int(available)

    assert asyncio.run(counts()) == (2500, 2500)


def test_event_loop_choice() -> None:
    """`auto` runs the commands on uvloop (a dependency), `asyncio` on the standard loop,
    and anything else is a clear configuration error, not a traceback."""
    import uvloop

    from dropgate.cli.loop import event_loop_runner

    async def loop_type() -> int:
        return 1 if isinstance(asyncio.get_running_loop(), uvloop.Loop) else 0

    assert event_loop_runner("auto")(loop_type()) == 1
    assert event_loop_runner("uvloop")(loop_type()) == 1
    assert event_loop_runner("asyncio")(loop_type()) == 0
    bad = subprocess.run([*DROPGATE, "migrate"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DROPGATE_EVENT_LOOP": "tokio"})
    assert bad.returncode == 2 and "DROPGATE_EVENT_LOOP must be auto, uvloop or asyncio" in bad.stderr
