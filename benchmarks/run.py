"""``.venv/bin/python -m benchmarks.run NAME [options]``: run one benchmark module, or list them.

Each benchmark is also runnable directly: ``.venv/bin/python -m benchmarks.NAME --help``.
``make bench`` runs one of them, ``benchmarks.hotpaths`` (issue #19).
"""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path

_NOT_BENCHMARKS = {"common", "run", "persister_fill"}


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if m.name not in _NOT_BENCHMARKS and not m.name.startswith("_"))


def main() -> None:
    names = available()
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print("usage: .venv/bin/python -m benchmarks.run NAME [options]   (options: NAME --help)")
        print("benchmarks: " + ", ".join(names))
        sys.exit(0 if len(sys.argv) < 2 else 2)
    name = sys.argv[1]
    sys.argv = [f"benchmarks.{name}", *sys.argv[2:]]
    runpy.run_module(f"benchmarks.{name}", run_name="__main__")


if __name__ == "__main__":
    main()
