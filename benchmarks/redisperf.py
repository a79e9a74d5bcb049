"""Where a ``redis-server``'s own CPU goes, from ``perf record -e cpu-clock``: its functions,
with the stripped ones named by the exported symbol before them.

Debian's ``redis-server`` is stripped: only the symbols it exports for modules remain
(``dictFind``, ``lua_tolstring``, ...). Lua 5.1 is linked in whole: its API (``lua_*``,
lapi.c, and the few ``lua_*`` functions of ldo.c, ldebug.c and lstate.c) is exported, the
rest of its core (the VM, tables, strings, the collector: the objects from lapi.o to lzio.o,
which the linker keeps together) is not, so perf reports that code as bare addresses. An
address in the binary whose nearest exported symbol before it is a ``lua_*`` function lies in
Lua's core; one after a ``luaL_*`` in its auxiliary library; one after ``luaopen_X`` in the
code of the library after X (Lua's standard libraries, then cjson, struct, cmsgpack, bit).
``group`` names bare addresses so; any other after symbol X as "X+ (stripped)".
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_CORE = "Lua's core, stripped (lapi.o to lzio.o: the VM, tables, strings, collector)"

_LINE = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[([.k])\]\s+(.+?)\s*$")
_ADDRESS = re.compile(r"^0x([0-9a-f]+)$")


@dataclass(frozen=True)
class Exported:
    """A binary's exported functions, sorted by address."""

    addresses: list[int]
    names: list[str]

    @classmethod
    def of(cls, binary: Path) -> Exported:
        listed = subprocess.run(["nm", "-D", "--defined-only", str(binary)], capture_output=True, text=True,
                                check=True).stdout
        found = sorted((int(a, 16), n) for a, kind, n in (line.split()[:3] for line in listed.splitlines()
                                                          if len(line.split()) >= 3) if kind in "Tt")
        return cls([a for a, _ in found], [n for _, n in found])

    def before(self, address: int) -> str | None:
        at = bisect.bisect_right(self.addresses, address) - 1
        return self.names[at] if at >= 0 else None


def stripped_name(before: str | None) -> str:
    """What stripped code after the exported symbol ``before`` is (see the module)."""
    if before is None:
        return "before the first exported symbol (stripped)"
    if before.startswith("luaopen_"):
        return f"Lua library code after {before} (stripped)"
    if before.startswith("luaL_"):
        return "Lua's auxiliary library, stripped (lauxlib.o)"
    if before.startswith("lua_"):
        return LUA_CORE
    return f"{before}+ (stripped)"


def group(report: str, binary_name: str, exported: Exported) -> dict[str, float]:
    """``perf report -n --sort dso,sym --stdio -g none`` lines -> percent of the samples by
    name, from the sample counts (perf's own percentages are rounded line by line: a thousand
    lines of one sample each overstate the sum by a few percent). Bare addresses in
    ``binary_name`` are named as the module says; kernel symbols are marked."""
    counts: dict[str, int] = {}
    for line in report.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        samples, dso, kind, symbol = int(m[1]), m[2], m[3], m[4]
        bare = _ADDRESS.match(symbol)
        if kind == "k":
            name = f"{symbol} (kernel)"
        elif bare and dso == binary_name:
            name = stripped_name(exported.before(int(bare[1], 16)))
        elif bare:
            name = f"{dso} (unnamed)"
        else:
            name = symbol
        counts[name] = counts.get(name, 0) + samples
    total = sum(counts.values())
    return {name: 100 * n / total for name, n in counts.items()} if total else {}


def read(out: Path, pid: int) -> dict[str, float]:
    """The recording's shares by function; ``pid``'s binary names its stripped code."""
    binary = Path(os.path.realpath(f"/proc/{pid}/exe"))
    report = subprocess.run(["perf", "report", "-i", str(out), "-n", "--no-children", "--sort", "dso,sym", "--stdio",
                             "-g", "none"], capture_output=True, text=True, check=True).stdout
    return group(report, binary.name, Exported.of(binary))
