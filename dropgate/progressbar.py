"""A terminal progress bar for long commands (uploads, reconcile): stderr, no dependency."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``update(done, total)`` redraws at most 10 times a second; a line every 2 s off a TTY."""

    def __init__(self, label: str, *, unit: str = "", width: int = 30) -> None:
        self.label = label
        self.unit = unit
        self.width = width
        self._tty = sys.stderr.isatty()
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self._tty else 2.0):
            return
        self._last = now
        fraction = min(done / total, 1.0) if total else 1.0
        filled = int(self.width * fraction)
        rate = done / max(now - self._started, 1e-6)
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{fraction:6.1%} {done:,}/{total:,}{self.unit} ({rate:,.0f}{self.unit}/s)")
        if self._tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def finish(self, done: int, total: int) -> None:
        self.update(done, total, force=True)
        if self._tty:
            print(file=sys.stderr, flush=True)
