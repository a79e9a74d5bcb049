"""The one progress bar: in place on a terminal, a line now and then elsewhere, quiet when small."""

from __future__ import annotations

import io

from dropgate.progressbar import ProgressBar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_place_on_a_terminal_and_stages_on_new_lines() -> None:
    out = _Tty()
    bar = ProgressBar("upload", unit=" B", stream=out)
    bar.update(50, 100)
    bar.update(60, 100)  # within 0.1 s of the last draw: not drawn
    bar.stage("next", 10)
    bar.finish(10)
    assert out.getvalue().startswith("\rupload [###############...............]  50.0% 50/100 B (")
    assert "60/100" not in out.getvalue()
    assert "\n\rnext [" in out.getvalue() and " 100.0% 10/10 B " in out.getvalue()
    assert out.getvalue().endswith("\n")


def test_lines_off_a_terminal_quiet_when_asked_or_small() -> None:
    out = io.StringIO()
    bar = ProgressBar("crowd", stream=out)
    bar.add_total(3)
    bar.advance()
    bar.finish()
    assert out.getvalue().count("\n") == 2 and "\r" not in out.getvalue()
    quiet = io.StringIO()
    ProgressBar(stream=quiet, lines_off_tty=False).finish(5, 5)
    small = _Tty()
    stage = ProgressBar(stream=small, min_total=1000)
    stage.stage("scan", 10)
    stage.advance(5)  # a small stage that has not run for a second stays quiet
    stage.close()
    assert quiet.getvalue() == "" and small.getvalue() == ""
