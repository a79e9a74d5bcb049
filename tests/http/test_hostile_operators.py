"""Operator traps (issue 21, item 6): a reconcile of a tenant that is not there checks
nothing and must not say "agree"; a guessable admin key is refused at start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from dropgate.settings import ConfigError, from_env


@pytest.mark.parametrize("tenant", ["*", "{", "nobody"])
async def test_reconcile_refuses_an_unknown_or_malformed_tenant(runtime: Runtime, tenant: str) -> None:
    report = await reconcile(runtime, tenant_id=tenant, wait_s=0)
    assert (report.result, report.exit_code) == ("error", 2), report
    assert report.error and "tenant" in report.error


async def test_reconcile_of_a_known_tenant_still_runs(runtime: Runtime) -> None:
    await runtime.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
    report = await reconcile(runtime, tenant_id="acme", wait_s=0)
    assert report.exit_code in (0, 1), report  # it compared (the event may not be persisted yet)


@pytest.mark.parametrize("key", ["short", "x" * 31, "has space" + "x" * 30, "caf\u00e9" + "x" * 30])
def test_a_guessable_admin_key_is_refused_without_echo(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"DROPGATE_ADMIN_KEY": key})
    message = str(info.value)
    assert message.startswith("DROPGATE_ADMIN_KEY must be at least 32 characters") and key not in message


def test_serve_refuses_a_short_admin_key_in_one_line(tmp_path: object) -> None:
    proc = subprocess.run([sys.executable, "-m", "dropgate", "serve"], capture_output=True, text=True,
                          timeout=60, env={"DROPGATE_ADMIN_KEY": "12345", "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "DROPGATE_ADMIN_KEY" in lines[0], proc.stderr
    assert "12345" not in proc.stderr
