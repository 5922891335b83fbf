"""Windows tile time from the epoch; only windows past their grace period are closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.jobs.windows import Window, closed_windows, window_of

T = datetime(2026, 11, 25, 12, 7, 30, tzinfo=UTC)
FIFTEEN = timedelta(minutes=15)


def test_a_moment_falls_in_its_aligned_window() -> None:
    assert window_of(T, FIFTEEN) == Window(
        datetime(2026, 11, 25, 12, 0, tzinfo=UTC), datetime(2026, 11, 25, 12, 15, tzinfo=UTC)
    )
    assert window_of(datetime(2026, 11, 25, 12, 15, tzinfo=UTC), FIFTEEN).start.minute == 15


def test_closed_windows_wait_for_the_grace_period() -> None:
    earliest = datetime(2026, 11, 25, 11, 40, tzinfo=UTC)

    at_end = closed_windows(
        earliest, datetime(2026, 11, 25, 12, 15, tzinfo=UTC), FIFTEEN, timedelta(minutes=2)
    )
    after_grace = closed_windows(
        earliest, datetime(2026, 11, 25, 12, 17, tzinfo=UTC), FIFTEEN, timedelta(minutes=2)
    )

    assert [w.start.strftime("%H:%M") for w in at_end] == ["11:30", "11:45"]
    assert [w.start.strftime("%H:%M") for w in after_grace] == ["11:30", "11:45", "12:00"]


def test_window_keys_are_stable_and_distinct() -> None:
    a, b = closed_windows(T - 2 * FIFTEEN, T, FIFTEEN, timedelta(0))

    assert a.key == "2026-11-25T11:30:00+00:00/900s"
    assert a.key != b.key
