"""Redis answers as text: redis-py types replies as ``bytes | str``."""

from __future__ import annotations


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def text_map(raw: dict[bytes, bytes] | dict[str, str] | dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}
