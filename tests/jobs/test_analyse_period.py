"""Re-analysing a period: every window with records is analysed again and its results replace
the earlier ones, under the window's lease, so a running worker never analyses it at the same
moment; and `edge-monitor analyse` says what it found."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from monitor.cli import main
from monitor.demo_model import MODEL_NAME
from monitor.jobs.analysis import Worker, analysis_key
from monitor.jobs.windows import Window
from monitor.storage import leases
from monitor.storage.engine import begin_write
from monitor.storage.models import get_model
from monitor.storage.tables import drift_scopes, job_leases
from tests.jobs.fleetdata import WINDOW
from tests.jobs.test_analysis import CONFIG, NOW, T0, run_scenario


def drift_rows(engine: Engine) -> tuple[int, int]:
    """(drift scope rows, distinct windows among them)."""
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(drift_scopes)).scalar_one()
        windows = conn.execute(
            select(func.count(func.distinct(drift_scopes.c.window_start)))
        ).scalar_one()
    return rows, windows


def computed_at(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(drift_scopes.c.computed_at)
                .where(drift_scopes.c.scope_kind == "fleet")
                .order_by(drift_scopes.c.window_start)
            ).scalars()
        )


def test_a_period_of_three_windows_is_analysed_and_a_second_run_replaces_its_results(
    engine: Engine,
) -> None:
    run_scenario(engine, "steady", windows=3, per_node=150)
    with engine.connect() as conn:
        model = get_model(conn, MODEL_NAME)
    worker = Worker(engine, CONFIG)
    steps: list[tuple[int, int]] = []

    first = worker.analyse_period(
        model, T0, T0 + 3 * WINDOW, progress=lambda done, total: steps.append((done, total))
    )
    after_first, stamped = drift_rows(engine), computed_at(engine)
    second = worker.analyse_period(model, T0 - WINDOW, T0 + 4 * WINDOW)

    assert first.analysed == [Window(T0 + i * WINDOW, T0 + (i + 1) * WINDOW) for i in range(3)]
    assert first.busy == []
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert after_first[1] == 3
    # Empty windows around the period are not analysed; the three are, again, and replace.
    assert second.analysed == first.analysed
    assert drift_rows(engine) == after_first
    assert all(b >= a for a, b in zip(stamped, computed_at(engine), strict=True))
    with engine.connect() as conn:
        attempts = conn.execute(select(job_leases.c.attempts)).scalars().all()
        done = leases.completed_keys(conn, f"analysis:{model.id}:")
    assert attempts == [2, 2, 2]
    assert done == {analysis_key(model.id, window) for window in first.analysed}


def test_windows_the_worker_completed_are_analysed_again(engine: Engine) -> None:
    run_scenario(engine, "steady", windows=2, per_node=150)
    worker = Worker(engine, CONFIG)
    assert worker.run_due(now=NOW) == 2
    with engine.connect() as conn:
        model = get_model(conn, MODEL_NAME)

    again = Worker(engine, CONFIG).analyse_period(model, T0, T0 + 2 * WINDOW)

    assert len(again.analysed) == 2
    assert drift_rows(engine)[1] == 2
    assert worker.run_due(now=NOW) == 0  # completed again: the worker leaves them be


def test_a_window_a_worker_holds_is_waited_for_then_analysed(engine: Engine) -> None:
    run_scenario(engine, "steady", windows=1, per_node=150)
    with engine.connect() as conn:
        model = get_model(conn, MODEL_NAME)
    key = analysis_key(model.id, Window(T0, T0 + WINDOW))
    with begin_write(engine) as conn:
        assert leases.claim(conn, key, "other-worker", timedelta(hours=1))
    waits: list[float] = []

    def other_worker_finishes(seconds: float) -> None:
        waits.append(seconds)
        with begin_write(engine) as conn:
            assert leases.complete(conn, key, "other-worker")

    done = Worker(engine, CONFIG).analyse_period(
        model, T0, T0 + WINDOW, pause=other_worker_finishes
    )

    assert len(waits) == 1
    assert len(done.analysed) == 1
    with engine.connect() as conn:
        lease = leases.lease_info(conn, key)
    assert lease is not None and lease["owner"] != "other-worker"
    assert lease["completed_at"] is not None


def test_analyse_prints_a_line_per_drifted_window_and_a_count(
    engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_scenario(engine, "sensor-drift", windows=3, per_node=300)
    args = ["--database-url", db_url, "analyse", "--model", MODEL_NAME]
    period = ["--from", T0.isoformat(), "--to", (T0 + 3 * WINDOW).strftime("%Y-%m-%dT%H:%M")]

    assert main([*args, *period]) == 0
    first = capsys.readouterr().out.splitlines()
    assert main([*args, *period]) == 0
    second = capsys.readouterr().out.splitlines()

    drifted = int(first[-1].split("drift in ")[1])
    assert first[-1] == f"3 window(s) analysed; drift in {drifted}"
    assert drifted >= 1
    assert len(first) == drifted + 1
    assert all(": drift at " in line for line in first[:-1])
    assert second == first
    assert drift_rows(engine)[1] == 3


@pytest.mark.parametrize(
    ("period", "message"),
    [
        (["--from", "2026-13-01", "--to", "2026-12-01"], "--from '2026-13-01' is not an ISO 8601"),
        (["--from", "2026-11-02", "--to", "2026-11-01"], "--to (2026-11-01T00:00:00+00:00) must"),
    ],
)
def test_a_bad_period_is_a_usage_error(
    db_url: str, capsys: pytest.CaptureFixture[str], period: list[str], message: str
) -> None:
    status = main(["--database-url", db_url, "analyse", "--model", "pump", *period])

    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and message in err[0]


def test_an_unknown_model_fails(
    engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "--database-url",
            db_url,
            "analyse",
            "--model",
            "nope",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02",
        ]
    )

    assert status == 1
    assert capsys.readouterr().err.strip() == "edge-monitor: error: no model named 'nope'"
