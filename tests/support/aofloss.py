"""What a kill -9 of Redis with ``appendfsync everysec`` may take with it, so the fault
checks excuse exactly that and nothing else.

With ``everysec``, Redis ``write()``s its AOF buffer before it replies, except while the
previous background fsync is still running: then it postpones the ``write()`` (silently,
for under 2 s of its whole-second clock; past that it logs "Asynchronous AOF fsync is
taking too long") and replies meanwhile. A kill -9 in that window loses writes that were
acknowledged, and the persister may already have read their log entries and committed
them to PostgreSQL, which then holds what Redis lost (README, "Durability"). The fault
lab's disk is shared and busy, so a run of the kill-Redis test saw it about one time in
ten: ``OPEN: acknowledged writes lost: ['u736']``, with no log line from Redis.

So under ``everysec``, and only there, a write acknowledged within ``WINDOW_S`` before a
kill is *at risk*: it may be missing from Redis, from PostgreSQL or from both, and the
two stores may then disagree on it, which ``dropgate reconcile`` must report. Everything
else is checked as under ``always``: a loss or a divergence outside the window, or of a
write not acknowledged in it, still fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Postponed while ``unixtime - start < 2`` on a whole-second clock: under 3 s, plus the
# time the kill takes to land after it is decided.
WINDOW_S = 3.5


@dataclass
class AofLoss:
    """The kills (monotonic times) after which acknowledged writes may be gone."""

    kills: list[float] = field(default_factory=list)

    def at_risk(self, acked_at: Iterable[float]) -> bool:
        """True when any of these acknowledgements came within the window before a kill."""
        return any(kill - WINDOW_S <= t <= kill for kill in self.kills for t in acked_at)

    def __bool__(self) -> bool:
        return bool(self.kills)
