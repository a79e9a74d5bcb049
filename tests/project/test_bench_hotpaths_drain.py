"""``benchmarks.hotpaths`` times a persister drain only when there is one to time (#19).

Issue #19 reported code reservations "at 32/s": the figure was the persister table's
drain rate for codes, 7 events left at the end of the crowd and gone by the next
sample 0.2 s later. A rate of a handful of events times the sampling (or the
persister's polling), not the persister, so the report says n/a for it.
"""

from __future__ import annotations

from benchmarks.hotpaths import MIN_DRAIN_EVENTS, Lag


def test_a_few_events_gone_by_the_next_sample_are_not_a_drain_rate() -> None:
    lag = Lag(samples=[(0.0, 0, 0), (4.8, 7, 1800), (5.0, 7, 1860), (5.2, 0, 1860)], crowd_s=5.0)
    summary = lag.summary()
    assert summary["backlog_at_end"] == 7
    assert summary["drain_per_s"] is None  # not 7 / 0.2 s = "35/s"


def test_a_dozen_events_picked_up_a_second_later_are_not_a_drain_rate() -> None:
    lag = Lag(samples=[(0.0, 0, 0), (5.0, 12, 500), (5.2, 12, 500), (6.1, 0, 500)], crowd_s=5.0)
    assert lag.summary()["drain_per_s"] is None  # not 12 / 1.1 s = "11/s"


def test_a_large_backlog_drained_over_seconds_is_timed() -> None:
    left = 2 * MIN_DRAIN_EVENTS
    lag = Lag(samples=[(0.0, 0, 0), (5.0, left, 9000), (6.0, left // 2, 9000), (7.0, 0, 9000)], crowd_s=5.0)
    summary = lag.summary()
    assert summary["drain_s"] == 2.0
    assert summary["drain_per_s"] == left / 2.0
