"""Webhook endpoint secrets at rest: sealed with AES-256-GCM under a server key (#18).

The dispatcher signs every delivery with the endpoint's secret, so it cannot be
hashed like an API key; instead PostgreSQL holds ``dgenc1:<base64url(nonce|ciphertext)>``,
sealed with a key derived (HKDF-SHA256) from ``DROPGATE_SECRET_KEY``, with the
endpoint id as associated data (a sealed secret copied onto another row does not
open). A dump of the database alone then signs nothing.

Unset, the key is generated once into ``<data dir>/secret.key`` (mode 0600): right
for one host; servers sharing a database must all be given the same
``DROPGATE_SECRET_KEY``. ``prepare_stored_secrets`` runs at every start after the
migrations: it refuses a key that does not open the secrets already stored (one line
naming the setting), then seals the rows a version before this one left in plaintext.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dropgate.settings import ConfigError, Settings, env_name

SEALED_PREFIX = "dgenc1:"
KEY_FILE = "secret.key"
_NONCE_BYTES = 12
_INFO = b"dropgate webhook endpoint secrets v1"
MISMATCH = (f"{env_name('secret_key')} does not open the webhook endpoint secrets stored in "
            "PostgreSQL: set it to the key they were sealed with (every server sharing the "
            "database needs the same one)")


class SecretKeyMismatch(ConfigError):
    """A sealed secret did not open with this process's key."""


class SecretBox:
    """Seals and opens endpoint secrets with one server key."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode())
        self._aead = AESGCM(key)

    def seal(self, secret: str, *, endpoint_id: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), endpoint_id.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str, *, endpoint_id: str) -> str:
        """The secret; a row left in plaintext (before its start-up sealing) as it is."""
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.urlsafe_b64decode(stored[len(SEALED_PREFIX):])
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], endpoint_id.encode())
        except (InvalidTag, ValueError):
            raise SecretKeyMismatch(MISMATCH) from None
        return plain.decode()


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


_boxes: dict[str, SecretBox] = {}


def secret_box(settings: Settings) -> SecretBox:
    """The box of ``settings``' key (or of the data dir's generated one), one per process."""
    key = settings.secret_key or _key_file(settings.data_path())
    box = _boxes.get(key)
    if box is None:
        box = _boxes[key] = SecretBox(key)
    return box


def _key_file(data_dir: Path) -> str:
    """The data dir's key, created on first use; two processes starting at once agree
    (the file appears whole, by a hard link that only the first one wins)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    return path.read_text().strip()


async def prepare_stored_secrets(pool: asyncpg.Pool, box: SecretBox) -> int:
    """Check the key against one stored secret, then seal the plaintext rows; returns
    how many were sealed (0 once every row is)."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT to_regclass('dg_webhook_endpoints') IS NULL"):
            return 0  # not migrated (a command run with migrations off)
        sample = await conn.fetchrow(
            "SELECT endpoint_id, secret FROM dg_webhook_endpoints WHERE secret LIKE $1 LIMIT 1",
            SEALED_PREFIX + "%")
        if sample is not None:
            box.open(sample["secret"], endpoint_id=sample["endpoint_id"])
        async with conn.transaction():
            rows = await conn.fetch(
                """SELECT endpoint_id, secret FROM dg_webhook_endpoints
                    WHERE secret NOT LIKE $1 FOR UPDATE""", SEALED_PREFIX + "%")
            await conn.executemany(
                "UPDATE dg_webhook_endpoints SET secret = $2 WHERE endpoint_id = $1",
                [(r["endpoint_id"], box.seal(r["secret"], endpoint_id=r["endpoint_id"])) for r in rows])
    return len(rows)
