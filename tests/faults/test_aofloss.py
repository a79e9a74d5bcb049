"""The everysec allowance of the fault checks (tests/support/aofloss.py) excuses only
writes acknowledged shortly before a kill, and nothing under ``always``."""

from __future__ import annotations

from pathlib import Path

from tests.support.aofloss import WINDOW_S, AofLoss
from tests.support.faultlab import PrivateRedis


def test_only_acknowledgements_just_before_a_kill_are_at_risk() -> None:
    loss = AofLoss([100.0])
    assert loss.at_risk([100.0]) and loss.at_risk([100.0 - WINDOW_S])
    assert not loss.at_risk([100.0 - WINDOW_S - 0.01])  # written long before: must survive
    assert not loss.at_risk([100.01])  # answered after the kill: by the restarted Redis
    assert loss.at_risk([10.0, 99.0])  # a purchase with one step in the window
    assert not AofLoss().at_risk([100.0]) and not AofLoss()


def test_always_excuses_nothing(tmp_path: Path) -> None:
    always = PrivateRedis(tmp_path / "a", appendfsync="always")
    everysec = PrivateRedis(tmp_path / "e", appendfsync="everysec")
    for redis in (always, everysec):
        redis.crashes.append(50.0)
    assert not always.aof_loss()
    assert everysec.aof_loss().at_risk([49.0])
