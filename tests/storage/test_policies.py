"""Window policies: fixed windows from an origin, calendar windows on a zone's wall clock (DST
included), their JSON forms and descriptions, a model's schedule of policies, and the tables
that keep schedules and cut row windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine

from monitor.errors import ValidationFailed
from monitor.storage import models, nodes, policies
from monitor.storage.engine import begin_write
from monitor.storage.policies import (
    Calendar,
    Fixed,
    Rows,
    Schedule,
    Segment,
    Window,
    parse_every,
    policy_from_json,
)
from monitor.storage.records import insert_batch, prepare_batch

BERLIN = ZoneInfo("Europe/Berlin")
FIFTEEN = timedelta(minutes=15)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_fixed_windows_tile_time_from_the_epoch_by_default() -> None:
    window = Fixed(FIFTEEN).window_of(utc(2026, 11, 25, 12, 7, 30))

    assert window == Window(utc(2026, 11, 25, 12, 0), utc(2026, 11, 25, 12, 15))


def test_fixed_windows_align_to_their_origin() -> None:
    weekly = Fixed(timedelta(days=7), datetime.fromisoformat("2026-01-05T00:00:00+01:00"))

    window = weekly.window_of(utc(2026, 3, 4, 12))

    # Mondays at midnight, Berlin winter time, every 7 days from 5 January.
    assert window == Window(utc(2026, 3, 1, 23), utc(2026, 3, 8, 23))
    assert weekly.window_of(utc(2026, 1, 4, 23)).start == utc(2026, 1, 4, 23)
    assert weekly.window_of(utc(2026, 1, 4, 22, 59)).end == utc(2026, 1, 4, 23)


def test_calendar_months_in_berlin_have_their_utc_bounds_across_daylight_saving() -> None:
    months = Calendar("month", "Europe/Berlin").windows(utc(2026, 2, 15), utc(2026, 4, 15))

    assert months == [
        Window(utc(2026, 1, 31, 23), utc(2026, 2, 28, 23)),  # CET: +01:00
        Window(utc(2026, 2, 28, 23), utc(2026, 3, 31, 22)),  # clocks go forward on 29 March
        Window(utc(2026, 3, 31, 22), utc(2026, 4, 30, 22)),  # CEST: +02:00
    ]
    assert months[1].start == berlin(2026, 3, 1)
    assert months[2].start == berlin(2026, 4, 1)


def test_a_berlin_day_lasts_23_24_or_25_hours() -> None:
    days = Calendar("day", "Europe/Berlin")

    def hours(day: datetime) -> float:
        window = days.window_of(day + timedelta(hours=12))
        return (window.end - window.start) / timedelta(hours=1)

    assert hours(berlin(2026, 3, 29)) == 23
    assert hours(berlin(2026, 3, 30)) == 24
    assert hours(berlin(2026, 10, 25)) == 25
    assert days.window_of(berlin(2026, 10, 25, 23, 59)).end == berlin(2026, 10, 26)


def test_calendar_hours_keep_the_repeated_hour_apart_when_clocks_go_back() -> None:
    hours = Calendar("hour", "Europe/Berlin").windows(utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))

    # 02:00-03:00 local happens twice (00:00 and 01:00 UTC): two windows, no overlap.
    assert hours == [
        Window(utc(2026, 10, 24, 23), utc(2026, 10, 25, 0)),
        Window(utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)),
        Window(utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),
    ]


def test_weeks_start_on_monday() -> None:
    week = Calendar("week").window_of(utc(2026, 11, 29, 18))  # a Sunday

    assert week == Window(utc(2026, 11, 23), utc(2026, 11, 30))
    assert week.start.weekday() == 0
    berlin_week = Calendar("week", "Europe/Berlin").window_of(utc(2026, 11, 29, 23, 30))
    assert berlin_week.start == berlin(2026, 11, 30)  # already Monday in Berlin


def test_quarters_and_years() -> None:
    assert Calendar("quarter").window_of(utc(2026, 11, 30)) == Window(
        utc(2026, 10, 1), utc(2027, 1, 1)
    )
    assert Calendar("quarter").window_of(utc(2026, 3, 31, 23)).end == utc(2026, 4, 1)
    assert Calendar("year", "Europe/Berlin").window_of(utc(2026, 6, 1)) == Window(
        berlin(2026, 1, 1), berlin(2027, 1, 1)
    )


def test_where_midnight_is_skipped_the_day_starts_when_the_clocks_jump() -> None:
    # Sao Paulo went from 00:00 to 01:00 on 4 November 2018.
    day = Calendar("day", "America/Sao_Paulo").window_of(utc(2018, 11, 4, 12))

    assert day.start == utc(2018, 11, 4, 3)  # 01:00 -02:00, the day's first moment
    assert day.end - day.start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("policy", "description"),
    [
        (Fixed(FIFTEEN), "every 15 min"),
        (Fixed(timedelta(hours=36)), "every 1 d 12 h"),
        (
            Fixed(timedelta(days=7), datetime.fromisoformat("2026-01-05T00:00:00+01:00")),
            "every 7 d from 2026-01-05T00:00:00+01:00",
        ),
        (Calendar("month", "Europe/Berlin"), "calendar month in Europe/Berlin"),
        (Rows(5000), "5000 rows"),
    ],
)
def test_each_policy_describes_itself_and_reads_back_from_its_json(
    policy: policies.Policy, description: str
) -> None:
    assert policy.describe() == description
    assert policy_from_json(policy.to_json()) == policy


@pytest.mark.parametrize(
    ("text", "minutes"), [("15m", 15), ("2h", 120), ("7d", 10080), ("1d12h", 2160), ("31d", 44640)]
)
def test_lengths_read_as_minutes(text: str, minutes: int) -> None:
    assert parse_every(text) == minutes


@pytest.mark.parametrize("text", ["0m", "32d", "31d1m", "", "15", "15 minutes", "m", "-5m"])
def test_lengths_out_of_bounds_or_unreadable_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_every(text)

    assert refused.value.code == "invalid_value"
    assert refused.value.details[0]["field"] == "every"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"kind": "calendar", "unit": "fortnight"}, "policy.unit"),
        ({"kind": "calendar", "unit": "day", "timezone": "Mars/Olympus"}, "policy.timezone"),
        ({"kind": "rows", "rows": 0}, "policy.rows"),
        ({"kind": "rows", "rows": True}, "policy.rows"),
        ({"kind": "fixed", "minutes": 15, "origin": "2026-01-05T00:00:00"}, "policy.origin"),
        ({"kind": "sliding"}, "policy.kind"),
    ],
)
def test_bad_json_forms_are_refused_with_their_field(doc: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        policy_from_json(doc)

    assert refused.value.details[0]["field"] == field


T = utc(2026, 11, 30, 10, 15)


def test_the_default_schedule_is_stored_as_null_and_resolves_to_the_settings_length() -> None:
    schedule = Schedule()

    (span,) = schedule.spans(timedelta(minutes=30))
    assert schedule.to_json() is None
    assert (span.since, span.until, span.policy, span.default) == (
        None,
        None,
        Fixed(timedelta(minutes=30)),
        True,
    )


def test_a_new_policy_takes_over_where_it_is_told_and_keeps_the_past() -> None:
    monthly = Calendar("month", "Europe/Berlin")

    schedule = Schedule().changed(monthly, T)
    again = schedule.changed(monthly, T + timedelta(days=3))
    back = schedule.changed(None, T + timedelta(days=3))

    assert schedule.segments == (Segment(None, None), Segment(T, monthly))
    assert again == schedule  # the same policy: nothing changes
    assert [s.policy for s in back.segments] == [None, monthly, None]
    first, second = schedule.spans(FIFTEEN)
    assert (first.until, second.since, second.until) == (T, T, None)
    assert Schedule.from_json(back.to_json()) == back


def test_a_policy_set_before_anything_was_analysed_applies_from_the_beginning() -> None:
    schedule = Schedule().changed(Rows(100), T).changed(Calendar("day"), None)

    assert schedule.segments == (Segment(None, Calendar("day")),)


def test_a_change_supersedes_segments_that_had_not_started() -> None:
    schedule = Schedule().changed(Rows(100), T).changed(Calendar("day"), T - timedelta(hours=1))

    assert schedule.segments == (
        Segment(None, None),
        Segment(T - timedelta(hours=1), Calendar("day")),
    )


def test_windows_are_clipped_to_their_segment() -> None:
    (_, span) = Schedule().changed(Calendar("day"), T).spans(FIFTEEN)

    first = span.clip(Calendar("day").window_of(T))

    assert first == Window(T, utc(2026, 12, 1))


# --- the tables ------------------------------------------------------------------------------


def model_with_records(engine: Engine, times: list[datetime]) -> int:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "m").id
        node_id = nodes.add_node(conn, "n")[0].id
        rows = [
            {"id": f"r{i}", "ts": t.timestamp(), "features": {"x": 1.0}, "prediction": 1}
            for i, t in enumerate(times)
        ]
        insert_batch(
            conn,
            node_id=node_id,
            model_id=model_id,
            model_version_id=models.version_id(conn, model_id, "1"),
            batch_uid=None,
            batch=prepare_batch(rows),
        )
    return model_id


def test_a_schedule_is_stored_in_the_model_row(engine: Engine) -> None:
    model_id = model_with_records(engine, [T])
    schedule = Schedule().changed(Calendar("month", "Europe/Berlin"), T)

    with begin_write(engine) as conn:
        policies.write_schedule(conn, model_id, schedule)
    with engine.connect() as conn:
        assert policies.read_schedule(conn, model_id) == schedule
        assert policies.schedules(conn) == {model_id: schedule}
        assert models.get_model(conn, "m").window_policy == schedule.to_json()


def test_row_windows_are_stored_once_and_read_by_period(engine: Engine) -> None:
    model_id = model_with_records(engine, [T])
    a, b = Window(T, T + FIFTEEN), Window(T + FIFTEEN, T + 2 * FIFTEEN)

    with begin_write(engine) as conn:
        policies.add_row_windows(conn, model_id, [(a, 10), (b, 12)])
        policies.add_row_windows(conn, model_id, [(Window(T, T + 2 * FIFTEEN), 22)])
    with engine.connect() as conn:
        assert policies.list_row_windows(conn, model_id) == [(a, 10), (b, 12)]
        assert policies.list_row_windows(conn, model_id, T + FIFTEEN, T + 3 * FIFTEEN) == [(b, 12)]
        assert policies.list_row_windows(conn, model_id, None, T + FIFTEEN) == [(a, 10)]


def test_a_new_schedule_forgets_row_windows_cut_after_it_takes_over(engine: Engine) -> None:
    model_id = model_with_records(engine, [T])
    a, b = Window(T, T + FIFTEEN), Window(T + FIFTEEN, T + 2 * FIFTEEN)
    with begin_write(engine) as conn:
        policies.add_row_windows(conn, model_id, [(a, 10), (b, 12)])

        policies.write_schedule(conn, model_id, Schedule().changed(Fixed(FIFTEEN), T + FIFTEEN))

        assert policies.list_row_windows(conn, model_id) == [(a, 10)]


def test_record_times_are_read_from_the_payloads_time_column(engine: Engine) -> None:
    times = [T, T + timedelta(microseconds=1), T + FIFTEEN]
    model_id = model_with_records(engine, times)

    with engine.connect() as conn:
        spans = policies.batch_spans(conn, model_id, T, None)
        found = policies.record_times(conn, spans.ids.tolist())
        later = policies.batch_spans(conn, model_id, T + 2 * FIFTEEN, None)

    assert found.tolist() == [policies.to_us(t) for t in times]
    assert spans.first_us.tolist() == [policies.to_us(T)]
    assert spans.n_records.tolist() == [3]
    assert len(later.ids) == 0
    assert policies.from_us(int(np.int64(policies.to_us(T)))) == T
