"""Random hex ids from a buffer of ``os.urandom`` bytes: one system call per ~400 ids.

The bytes are the kernel's CSPRNG output, as with ``os.urandom(n).hex()``; only the
call is amortized (a ``getrandom`` call per id was a visible share of a request's
CPU). A forked child starts with an empty buffer, so no two processes share bytes.
"""

from __future__ import annotations

import os

_CHUNK = 4096
_buf = b""
_pos = 0


def random_hex(nbytes: int) -> str:
    """``2 * nbytes`` lowercase hex characters of fresh randomness."""
    global _buf, _pos
    start = _pos
    end = start + nbytes
    if end > len(_buf):
        _buf = os.urandom(max(_CHUNK, nbytes))
        start, end = 0, nbytes
    _pos = end
    return _buf[start:end].hex()


def _forget() -> None:
    global _buf, _pos
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_forget)
