"""Checkout sits above the engine: the engine never loads the provider, the HTTP layer
or checkout, and names neither ``aiohttp`` nor ``stripe`` (import-linter's contract in
``make lint`` states the same for the whole layer map)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dropgate.engine

_PROBE = """
import importlib, pkgutil, sys
import dropgate.engine as engine
for module in pkgutil.walk_packages(engine.__path__, "dropgate.engine."):
    importlib.import_module(module.name)
print(" ".join(sorted(n for n in sys.modules if n == "stripe" or n.startswith(
    ("stripe.", "dropgate.http", "dropgate.checkout", "dropgate.client")))))
"""


def test_the_engine_loads_no_provider_http_or_checkout() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_no_engine_module_imports_aiohttp_or_stripe() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(aiohttp|stripe)\b", re.M)
    root = Path(dropgate.engine.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
