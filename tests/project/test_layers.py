"""The layers hold (import-linter's contracts in pyproject.toml), every module imports
alone in a fresh interpreter in any order (no runtime import loop), and the engine
pulls in neither stripe nor aiohttp."""

from __future__ import annotations

import random
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dropgate"


def _modules(*, scripts: bool = True) -> list[str]:
    """Every module of the package (``scripts=False``: not the ``__main__`` ones, which run)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if scripts or parts[-1] != "__main__":
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_contracts_place_every_top_level_module() -> None:
    """A new top-level module must be named by the contracts that list the others."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    top = {m for m in _modules() if m.count(".") == 1}
    ground = {"dropgate.errors", "dropgate.money", "dropgate.ids"}
    assert set(contracts["ground-floor"]["forbidden_modules"]) == top - ground
    assert set(contracts["models"]["forbidden_modules"]) == top - ground - {"dropgate.models"}
    assert set(contracts["client"]["forbidden_modules"]) == top - ground - {"dropgate.models", "dropgate.client"}
    assert set(contracts["cli-on-top"]["source_modules"]) == top - {"dropgate.cli", "dropgate.__main__"}


def test_every_module_imports_alone_in_any_order() -> None:
    modules = _modules(scripts=False)
    assert len(modules) > 50
    for seed in (1, 2, 3):
        order = modules[:]
        random.Random(seed).shuffle(order)
        result = _run(f"import importlib\nfor m in {order!r}:\n    importlib.import_module(m)\n")
        assert result.returncode == 0, f"seed {seed}: {result.stderr[-3000:]}"


def test_each_module_imports_first_in_a_fresh_interpreter() -> None:
    """A loop between two modules shows only when one of them is imported first."""
    def first(module: str) -> str | None:
        result = _run(f"import {module}")
        return None if result.returncode == 0 else f"{module}: {result.stderr[-500:]}"

    with ThreadPoolExecutor(4) as pool:
        bad = [b for b in pool.map(first, _modules(scripts=False)) if b]
    assert not bad, "\n".join(bad)


_GUARD = """
import importlib, sys
class Guard:
    # refuses stripe and aiohttp to an importing module of dropgate (a library the
    # engine uses may use them: aioboto3 talks to S3 over aiohttp)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("stripe", "aiohttp"):
            f = sys._getframe(1)
            while f is not None and f.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
                f = f.f_back
            caller = f.f_globals.get("__name__", "") if f is not None else ""
            if caller.startswith("dropgate"):
                raise ImportError(f"{caller} imports {name}")
        return None
sys.meta_path.insert(0, Guard())
"""


def test_the_engine_imports_neither_stripe_nor_aiohttp() -> None:
    engine = [m for m in _modules() if m.startswith("dropgate.engine")]
    result = _run(_GUARD + f"for m in {engine!r}:\n    importlib.import_module(m)\n")
    assert result.returncode == 0, result.stderr[-3000:]
    # the guard works: the HTTP layer does import aiohttp
    result = _run(_GUARD + "import dropgate.http.app\n")
    assert result.returncode != 0 and "imports aiohttp" in result.stderr
