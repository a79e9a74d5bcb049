"""A progress bar on stderr for large runs (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``stage(name, total)`` then ``advance(n)``; draws at most ten times a second, and only
    once a stage is large (``min_total`` items) or has run for a second."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None,
                 min_total: int = 20_000) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._min_total = min_total
        self._name = ""
        self._total: int | None = None
        self._done = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn = False

    def stage(self, name: str, total: int | None = None) -> None:
        self._finish_line()
        self._name, self._total, self._done = name, total, 0
        self._started = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self._done += n
        if not self._enabled:
            return
        now = time.monotonic()
        large = (self._total or 0) >= self._min_total or now - self._started >= 1.0
        if not large or now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        width = 30
        if self._total:
            share = min(self._done / self._total, 1.0)
            bar = "#" * int(width * share) + "." * (width - int(width * share))
            line = f"  {self._name:<18} [{bar}] {self._done:,}/{self._total:,}"
        else:
            line = f"  {self._name:<18} {self._done:,}"
        self._stream.write("\r" + line)
        self._stream.flush()
        self._drawn = True

    def _finish_line(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def close(self) -> None:
        self._finish_line()
