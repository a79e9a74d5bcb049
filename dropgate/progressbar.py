"""One progress bar for long work (uploads, the demo's crowd, reconcile): stderr, no dependency.

Counting and drawing are one object: callers ``advance`` (or ``update`` to a
position) and the bar redraws when it is due. On a terminal it redraws one line in
place at most ten times a second; elsewhere (logs, CI) it prints a line every two
seconds, or nothing with ``lines_off_tty=False``. ``stage`` starts a new count on a
new line (the steps of a reconcile); with ``min_total`` a stage stays quiet until
it is that large or has run for a second, so small runs print nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``advance(n)`` / ``update(done, total)`` as work goes, ``finish`` (last line) or ``close``."""

    def __init__(self, label: str = "", *, total: int | None = None, unit: str = "", width: int = 30,
                 stream: TextIO | None = None, enabled: bool | None = None,
                 lines_off_tty: bool = True, min_total: int = 0) -> None:
        """``enabled``: None draws in place on a terminal (and, with ``lines_off_tty``, a line
        every two seconds elsewhere); True always draws in place; False never draws."""
        self._stream = stream or sys.stderr
        tty = self._stream.isatty()
        self._in_place = tty if enabled is None else enabled
        self._on = (tty or lines_off_tty) if enabled is None else enabled
        self.label = label
        self.total = total
        self.done = 0
        self.unit = unit
        self.width = width
        self._min_total = min_total
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._line_open = False  # an in-place line waits for its newline

    def stage(self, label: str, total: int | None = None) -> None:
        """End the current line and count a new step from zero."""
        self.close()
        self.label, self.total, self.done = label, total, 0
        self._started = time.monotonic()
        self._drawn_at = 0.0

    def add_total(self, n: int) -> None:
        self.total = (self.total or 0) + n

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self._draw(force=force)

    def finish(self, done: int | None = None, total: int | None = None) -> None:
        """Draw the last state (whatever the rate limit) and end the line."""
        self.update(self.done if done is None else done, total, force=True)
        self.close()

    def close(self) -> None:
        """End the line drawn in place, if any (the next output starts on a fresh line)."""
        if self._line_open:
            self._stream.write("\n")
            self._stream.flush()
            self._line_open = False

    def _draw(self, *, force: bool = False) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if not force:
            if now - self._drawn_at < (0.1 if self._in_place else 2.0):
                return
            if (self.total or 0) < self._min_total and now - self._started < 1.0:
                return
        self._drawn_at = now
        line = self._line(now)
        if self._in_place:
            self._stream.write("\r" + line)
            self._line_open = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def _line(self, now: float) -> str:
        rate = f"({self.done / max(now - self._started, 1e-6):,.0f}{self.unit}/s)"
        if not self.total:
            return f"{self.label} {self.done:,}{self.unit} {rate}"
        share = min(self.done / self.total, 1.0)
        filled = int(self.width * share)
        return (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {share:6.1%} "
                f"{self.done:,}/{self.total:,}{self.unit} {rate}")
