"""Progress: a bar redrawn in place on a terminal; plain lines, a tenth of the way apart, in a
log file or a pipe (no carriage-return frames)."""

from __future__ import annotations

import io

from monitor.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_a_line_per_tenth_without_carriage_returns() -> None:
    log = io.StringIO()
    bar = Progress("analysing windows", log)

    for done in range(1, 101):
        bar.show(done / 100, f"{done}/100")

    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0] == "analysing windows: 1/100"
    assert lines[-1] == "analysing windows: 100/100"
    assert len(lines) == 11  # the start, then every tenth


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_ends_its_line() -> None:
    screen = Terminal()
    bar = Progress("simulating", screen)

    bar.show(0.5, "10 predictions")
    bar.show(1.0, "20 predictions")

    frames = screen.getvalue().split("\r")[1:]
    assert frames == [
        f"simulating [{'#' * 15:<30}] 10 predictions",
        f"simulating [{'#' * 30}] 20 predictions\n",
    ]
