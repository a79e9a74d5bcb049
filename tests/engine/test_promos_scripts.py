"""The promo scripts' headers tell the truth: keys, error codes, and the Python callers."""

from __future__ import annotations

import inspect
import re

from dropgate.engine import promos
from dropgate.engine.scripts import sources
from dropgate.errors import ERRORS

_USED_ERROR_RE = re.compile(r"dg_error\('([A-Z_]+)'")


def test_promo_script_headers_match_their_bodies() -> None:
    scripts = {name: src for name, src in sources().items() if name.startswith("promo_")}
    assert set(scripts) == {"promo_create", "promo_update", "promo_redeem", "promo_rollback"}
    caller = inspect.getsource(promos)
    for name, src in scripts.items():
        assert src.declared_keys == tuple(range(1, src.num_keys + 1)), name
        used_keys = {int(k) for k in re.findall(r"KEYS\[(\d+)\]", src.text.split("]]", 1)[1])}
        assert used_keys == set(src.declared_keys), name
        used = set(_USED_ERROR_RE.findall(src.text.split("]]", 1)[1]))
        assert used == set(src.declared_errors), (name, used ^ set(src.declared_errors))
        assert set(src.declared_errors) <= set(ERRORS), name
        assert f'"{name}"' in caller, f"{name} has no caller in engine/promos.py"
