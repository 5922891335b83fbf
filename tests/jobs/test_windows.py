"""Windows tile time from the epoch by default; only windows past their grace period are
closed. Each model's window policy cuts its windows: row windows are cut exactly at N records and
never move; a worker analyses by the policy, and a change of policy keeps stored results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.windows import Window, closed_windows, cut_row_windows, window_of
from monitor.storage import models, nodes, policies, results
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels
from monitor.storage.policies import Calendar, Fixed, Rows
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.windows import load_window

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


# --- window policies applied by the worker ---------------------------------------------------

GRACE = timedelta(minutes=1)
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def store(
    engine: Engine, times: list[datetime], model: str = "m", ids: list[str] | None = None
) -> int:
    """One batch of records made at ``times`` (node n), for model ``model``; its id."""
    with begin_write(engine) as conn:
        found = models.find_model(conn, model)
        model_id = (found or models.add_model(conn, model)).id
        node_id = _node(conn)
        rows = [
            {"id": uid, "ts": t.timestamp(), "features": {"x": 1.0}, "prediction": 1}
            for uid, t in zip(ids or [uuid.uuid4().hex for _ in times], times, strict=True)
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


def _node(conn: Connection) -> int:
    existing = [n for n in nodes.list_nodes(conn) if n.name == "n"]
    return existing[0].id if existing else nodes.add_node(conn, "n")[0].id


def set_policy(engine: Engine, model_id: int, policy: policies.Policy | None) -> None:
    with begin_write(engine) as conn:
        schedule = policies.read_schedule(conn, model_id)
        at = policies.last_analysed_end(conn, model_id)
        policies.write_schedule(conn, model_id, schedule.changed(policy, at))


def cut(engine: Engine, model_id: int, now: datetime) -> list[tuple[Window, int]]:
    with begin_write(engine) as conn:
        schedule = policies.read_schedule(conn, model_id)
        cut_row_windows(conn, model_id, schedule, FIFTEEN, now, GRACE)
    with engine.connect() as conn:
        return policies.list_row_windows(conn, model_id)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


US = timedelta(microseconds=1)


def test_row_windows_are_cut_exactly_at_n_records(engine: Engine) -> None:
    model_id = store(engine, [minutes(m) for m in (0, 1, 2, 3)])
    store(engine, [minutes(m) for m in (4, 5, 6, 7, 8, 9, 10, 11)])  # its own batch
    set_policy(engine, model_id, Rows(5))

    windows = cut(engine, model_id, now=minutes(60))

    assert windows == [
        (Window(minutes(0), minutes(4) + US), 5),
        (Window(minutes(4) + US, minutes(9) + US), 5),
    ]  # the last two records wait for three more


def test_row_windows_never_move_when_more_records_arrive(engine: Engine) -> None:
    model_id = store(engine, [minutes(m) for m in range(10)])
    set_policy(engine, model_id, Rows(5))
    before = cut(engine, model_id, now=minutes(60))

    store(engine, [minutes(2.5), minutes(7.5)])  # late: inside the cut windows
    store(engine, [minutes(m) for m in (10, 11, 12, 13, 14, 15)])
    after = cut(engine, model_id, now=minutes(60))

    assert after[:2] == before
    assert after[2:] == [(Window(minutes(9) + US, minutes(14) + US), 5)]
    with engine.connect() as conn:
        assert len(load_window(conn, model_id, before[0][0].start, before[0][0].end)) == 6


def test_a_row_window_waits_for_the_grace_period_after_its_nth_record(engine: Engine) -> None:
    model_id = store(engine, [minutes(m) for m in range(5)])
    set_policy(engine, model_id, Rows(5))

    assert cut(engine, model_id, now=minutes(4) + GRACE - US) == []
    assert cut(engine, model_id, now=minutes(4) + GRACE) == [
        (Window(minutes(0), minutes(4) + US), 5)
    ]


def test_records_sharing_the_nth_time_fall_in_the_same_row_window(engine: Engine) -> None:
    model_id = store(engine, [minutes(0), minutes(1), minutes(2), minutes(2), minutes(3)])
    set_policy(engine, model_id, Rows(3))

    assert cut(engine, model_id, now=minutes(60)) == [(Window(minutes(0), minutes(2) + US), 4)]


def test_a_worker_with_a_monthly_policy_analyses_a_year_as_12_windows(engine: Engine) -> None:
    year = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=d, hours=7) for d in range(0, 365, 4)]
    model_id = store(engine, year)
    set_policy(engine, model_id, Calendar("month", "Europe/Berlin"))
    worker = Worker(
        engine, AnalysisConfig(window=FIFTEEN, grace=GRACE, lookback=timedelta(days=800))
    )

    analysed = worker.run_due(now=datetime(2026, 2, 1, tzinfo=UTC))

    with engine.connect() as conn:
        windows = results.analysed_windows(conn, model_id)
    assert analysed == 12
    berlin = ZoneInfo("Europe/Berlin")
    assert [start.astimezone(berlin) for start, _ in windows] == [
        datetime(2025, month, 1, tzinfo=berlin) for month in range(1, 13)
    ]
    assert windows[-1][1] == datetime(2026, 1, 1, tzinfo=berlin)


def test_a_worker_with_a_rows_policy_analyses_each_cut_window_once(engine: Engine) -> None:
    model_id = store(engine, [minutes(m) for m in range(12)])
    set_policy(engine, model_id, Rows(5))
    worker = Worker(engine, AnalysisConfig(window=FIFTEEN, grace=GRACE, lookback=timedelta(days=1)))

    first = worker.run_due(now=minutes(60))
    again = worker.run_due(now=minutes(61))

    with engine.connect() as conn:
        windows = results.analysed_windows(conn, model_id)
        model = models.get_model(conn, "m")
        listed = worker.windows_in(conn, model, minutes(0), minutes(60))
    assert (first, again) == (2, 0)
    assert windows == [(minutes(0), minutes(4) + US), (minutes(4) + US, minutes(9) + US)]
    assert listed == [Window(*w) for w in windows]


def test_changing_the_policy_keeps_stored_results_and_cuts_what_follows(engine: Engine) -> None:
    model_id = store(engine, [minutes(m) for m in range(0, 60, 5)])  # 08:00-09:00
    worker = Worker(engine, AnalysisConfig(window=FIFTEEN, grace=GRACE, lookback=timedelta(days=1)))
    assert worker.run_due(now=minutes(62)) == 4
    with engine.connect() as conn:
        before = results.analysed_windows(conn, model_id)

    set_policy(engine, model_id, Fixed(timedelta(hours=1)))  # at 09:02
    store(engine, [minutes(m) for m in range(60, 240, 5)])  # 09:00-12:00
    analysed = worker.run_due(now=minutes(242))

    with engine.connect() as conn:
        after = results.analysed_windows(conn, model_id)
        model = models.get_model(conn, "m")
        listed = worker.windows_in(conn, model, minutes(30), minutes(150))
    assert after[:4] == before  # the 15-minute windows stay, with their results
    assert analysed == 3
    assert after[4:] == [
        (minutes(60), minutes(120)),
        (minutes(120), minutes(180)),
        (minutes(180), minutes(240)),
    ]
    assert listed == [
        Window(minutes(30), minutes(45)),
        Window(minutes(45), minutes(60)),
        Window(minutes(60), minutes(120)),
        Window(minutes(120), minutes(180)),
    ]


def test_late_labels_refresh_the_window_of_the_models_policy(engine: Engine) -> None:
    def day(d: int) -> datetime:
        return datetime(2025, 1, 1, 7, tzinfo=UTC) + timedelta(days=d)

    store(engine, [day(d) for d in range(0, 31, 2)], ids=[f"r{d}" for d in range(0, 31, 2)])
    model_id = store(
        engine, [day(d) for d in range(32, 59, 2)], ids=[f"r{d}" for d in range(32, 59, 2)]
    )
    set_policy(engine, model_id, Calendar("month"))
    now = datetime(2025, 3, 2, tzinfo=UTC)
    worker = Worker(
        engine, AnalysisConfig(window=FIFTEEN, grace=GRACE, lookback=timedelta(days=90))
    )
    assert worker.run_due(now=now) == 2  # January and February

    with begin_write(engine) as conn:  # labels of three February records
        upsert_labels(
            conn,
            model_id=model_id,
            node_id=None,
            rows=[{"request_id": f"r{d}", "label": "1", "ts": None} for d in (40, 42, 44)],
        )
    refreshed = worker.refresh_performance(now=now)

    with engine.connect() as conn:
        found = {
            run.window_start: run.result.n_labelled
            for run in results.performance(conn, model_id, scope_kind="fleet")
        }
    assert refreshed == 1
    assert found == {datetime(2025, 1, 1, tzinfo=UTC): 0, datetime(2025, 2, 1, tzinfo=UTC): 3}
