"""Endpoint secrets at rest (#18): PostgreSQL holds them sealed, deliveries still verify
with the secret shown at registration, plaintext rows of a version before are sealed at
start, and a key that does not open them stops the start in one line naming the setting."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import ConfigError, Settings, from_env
from dropgate.webhooks.sealing import (
    KEY_FILE,
    SecretBox,
    SecretKeyMismatch,
    is_sealed,
    prepare_stored_secrets,
    secret_box,
)
from tests.conftest import Api
from tests.support.webhooks import Receiver, receiver, register, webhook_settings

__all__ = ["receiver"]

KEY = "k" * 40


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, secret_key=KEY)


async def _deliver_one(api: Api, runtime: Runtime, code: str) -> None:
    assert (await api.call("POST", "/v1/invites", json={"code": code, "max_uses": 5}))[0] == 201
    assert (await api.call("POST", f"/v1/invites/{code}/redeem", json={"user_id": "u1"}))[0] == 200
    dispatcher = runtime.new_dispatcher(name=f"d-{code}")
    try:
        await dispatcher.drain()
    finally:
        await dispatcher.aclose()


async def test_stored_sealed_and_deliveries_verify(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    endpoint = await register(api, receiver, ["invite.redeemed"])
    secret = endpoint["secret"]
    stored = await runtime.pool.fetchval(
        "SELECT secret FROM dg_webhook_endpoints WHERE endpoint_id = $1", endpoint["endpoint_id"])
    assert stored != secret and secret not in stored and secret.removeprefix("whsec_") not in stored
    assert is_sealed(stored)
    await _deliver_one(api, runtime, "SEALED")
    assert receiver.rejected == 0 and len(receiver.accepted) == 1  # verified with the secret shown once
    # the sealed value is bound to its row: copied onto another endpoint it does not open
    with pytest.raises(SecretKeyMismatch):
        secret_box(runtime.settings).open(stored, endpoint_id="we_other")


async def test_plaintext_rows_sealed_at_start(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    endpoint = await register(api, receiver, ["invite.redeemed"])
    # a row as the version before this one stored it
    await runtime.pool.execute("UPDATE dg_webhook_endpoints SET secret = $1", endpoint["secret"])
    await _deliver_one(api, runtime, "BEFORE")  # a plaintext row still delivers until sealed
    assert await prepare_stored_secrets(runtime.pool, secret_box(runtime.settings)) == 1
    stored = await runtime.pool.fetchval("SELECT secret FROM dg_webhook_endpoints")
    assert is_sealed(stored) and endpoint["secret"] not in stored
    assert await prepare_stored_secrets(runtime.pool, secret_box(runtime.settings)) == 0
    await _deliver_one(api, runtime, "AFTER")
    assert receiver.rejected == 0 and len(receiver.accepted) == 2


async def test_wrong_key_refused_at_start_in_one_line(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    await register(api, receiver, ["invite.redeemed"])
    other = msgspec.structs.replace(runtime.settings, secret_key="o" * 40)
    with pytest.raises(SecretKeyMismatch) as refused:
        async with open_runtime(other, run_persister=False):
            pass
    message = str(refused.value)
    assert "DROPGATE_SECRET_KEY" in message and "\n" not in message
    # the right key still opens everything
    async with open_runtime(runtime.settings, run_persister=False) as again:
        assert await prepare_stored_secrets(again.pool, secret_box(again.settings)) == 0


def test_short_key_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^DROPGATE_SECRET_KEY must be at least 32 characters") as bad:
        from_env({"DROPGATE_SECRET_KEY": "short"})
    assert "short" not in str(bad.value)  # a secret is never repeated
    assert from_env({"DROPGATE_SECRET_KEY": KEY}).secret_key == KEY


def test_generated_key_kept_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    box = secret_box(settings)
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = box.seal("whsec_x", endpoint_id="we_1")
    # another process reading the same data dir opens it
    assert SecretBox(path.read_text().strip()).open(sealed, endpoint_id="we_1") == "whsec_x"
    assert list((tmp_path / "data").iterdir()) == [path]  # no draft left behind
