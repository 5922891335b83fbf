"""Workers: late labels update accuracy, several workers analyse each window once, a dead
worker's window is taken over, and the report of a window names what drifted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from monitor.cli import main
from monitor.jobs.analysis import Worker, analysis_key
from monitor.jobs.windows import Window
from monitor.schema import PerformanceScope
from monitor.storage import leases, results
from monitor.storage.engine import begin_write
from monitor.storage.tables import drift_scopes, job_leases
from monitor.storage.types import utcnow
from tests.jobs.fleetdata import WINDOW, send_labels
from tests.jobs.test_analysis import CONFIG, NOW, T0, drifted, run_scenario

REPO = Path(__file__).resolve().parents[2]


def fleet_performance(engine: Engine, model_id: int) -> PerformanceScope:
    with engine.connect() as conn:
        (run,) = results.performance(conn, model_id, scope_kind="fleet")
    return run.result


def test_late_labels_update_accuracy_and_coverage_of_an_analysed_window(engine: Engine) -> None:
    model_id, _, stored = run_scenario(engine, "steady", windows=1)
    worker = Worker(engine, CONFIG)
    worker.run_due(now=NOW)
    before = fleet_performance(engine, model_id)

    send_labels(engine, model_id, stored[0], share=0.5)
    refreshed = worker.refresh_performance(now=NOW)

    after = fleet_performance(engine, model_id)
    assert (before.n_labelled, before.accuracy) == (0, None)
    assert refreshed == 1
    assert after.n_labelled == 8 * 150
    assert after.label_coverage == pytest.approx(0.5)
    assert after.accuracy is not None and 0.5 < after.accuracy <= 1.0
    assert worker.refresh_performance(now=NOW) == 0  # nothing new since


def test_two_worker_processes_analyse_every_window_exactly_once(
    engine: Engine, db_url: str
) -> None:
    run_scenario(engine, "steady", windows=4, per_node=250)
    env = {
        **os.environ,
        "MONITOR_DATABASE_URL": db_url,
        "MONITOR_ANALYSIS_LOOKBACK_HOURS": str(24 * 365),
    }

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "worker", "--once"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,  # what the worker tells its operator; stderr: its logs
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]

    assert [w.returncode for w in workers] == [0, 0], outputs
    analysed = sum(int(out.split("caught up: ")[1].split()[0]) for out, _ in outputs)
    assert analysed == 4
    with engine.connect() as conn:
        attempts = conn.execute(select(job_leases.c.attempts)).scalars().all()
        per_window = (
            conn.execute(
                select(func.count()).select_from(drift_scopes).group_by(drift_scopes.c.window_start)
            )
            .scalars()
            .all()
        )
    assert attempts == [1, 1, 1, 1]
    assert per_window == [21, 21, 21, 21]


def test_a_dead_workers_window_is_taken_over_when_its_lease_expires(engine: Engine) -> None:
    model_id, _, _ = run_scenario(engine, "steady", windows=2, per_node=250)
    held = Window(T0, T0 + WINDOW)
    claimed = utcnow()
    with begin_write(engine) as conn:  # a worker that claimed the first window, then died
        lease = timedelta(seconds=1)
        assert leases.claim(conn, analysis_key(model_id, held), "dead", lease, claimed)
    survivor = Worker(engine, CONFIG, clock=lambda: claimed)

    assert survivor.run_due(now=NOW) == 1
    survivor.clock = lambda: claimed + timedelta(seconds=2)
    assert survivor.run_due(now=NOW) == 1

    with engine.connect() as conn:
        lease = leases.lease_info(conn, analysis_key(model_id, held))
    assert lease["owner"] == survivor.owner
    assert lease["attempts"] == 2
    assert lease["completed_at"] is not None
    assert survivor.run_due(now=NOW) == 0


def test_the_report_of_a_window_names_the_drifted_features(
    engine: Engine, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_id, _, _ = run_scenario(engine, "sensor-drift")
    Worker(engine, CONFIG).run_due(now=NOW)
    assert "temperature_c" in drifted(engine, model_id, 2, "fleet")[""]
    out = tmp_path / "report.html"

    code = main(["--database-url", db_url, "report", "--model", "pump-failure", "--out", str(out)])

    assert code == 0
    html = out.read_text()
    assert "temperature_c" in html and "vibration_mm_s" in html
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    printed = capsys.readouterr().out
    assert "fleet: drift detected on " in printed and "temperature_c" in printed


def test_a_window_is_reported_for_one_scope_and_its_evidently_part_is_kept(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    run_scenario(engine, "sensor-drift", windows=3, per_node=250)
    Worker(engine, CONFIG).run_due(now=NOW)
    out = tmp_path / "fresh.html"

    start = (T0 + 2 * WINDOW).isoformat()
    code = main(
        [
            "--database-url",
            db_url,
            "report",
            "--model",
            "pump-failure",
            "--window",
            start,
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert "temperature_c" in out.read_text()
    site = tmp_path / "site.html"
    args = ["--database-url", db_url, "report", "--model", "pump-failure", "--window", start]
    assert main([*args, "--scope", "site:site-b", "--out", str(site)]) == 0
    html = site.read_text()
    assert "scope: <b>site site-b</b>" in html and "No drift detected" in html
    assert main([*args, "--scope", "planet:mars"]) == 1
    assert (
        main(
            ["--database-url", db_url, "report", "--model", "pump-failure", "--window", "yesterday"]
        )
        == 1
    )


def test_a_worker_killed_mid_job_leaves_its_window_to_another_after_the_lease(
    engine: Engine, db_url: str
) -> None:
    import signal

    model_id, _, _ = run_scenario(engine, "sensor-drift", windows=1, per_node=250)
    env = {
        **os.environ,
        "MONITOR_DATABASE_URL": db_url,
        "MONITOR_ANALYSIS_LOOKBACK_HOURS": str(24 * 365),
        "MONITOR_ANALYSIS_LEASE_SECONDS": "3",
    }
    key = analysis_key(model_id, Window(T0, T0 + WINDOW))
    doomed = subprocess.Popen(
        [sys.executable, "-m", "monitor", "worker", "--once"],
        env=env,
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    lease = None
    while time.monotonic() < deadline and lease is None:
        with engine.connect() as conn:
            lease = leases.lease_info(conn, key)
        time.sleep(0.02)
    assert lease is not None and lease["completed_at"] is None, "the worker never claimed"
    # Hold the lease row (and on SQLite the write lock) so that the worker, which has just
    # claimed the window and takes far longer than this to load and analyse it, cannot
    # complete it: it is killed mid-job.
    with begin_write(engine) as conn:
        conn.execute(
            update(job_leases).where(job_leases.c.key == key).values(attempts=job_leases.c.attempts)
        )
        time.sleep(1.0)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
    expired = lease["expires_at"] + timedelta(seconds=1)

    assert Worker(engine, CONFIG).run_due(now=NOW) == 0  # the dead worker's lease still holds
    survivor = Worker(engine, CONFIG, clock=lambda: expired)
    assert survivor.run_due(now=NOW) == 1

    with engine.connect() as conn:
        taken = leases.lease_info(conn, key)
        runs = results.drift(conn, model_id, scope_kind="fleet")
    assert (taken["owner"], taken["attempts"]) == (survivor.owner, 2)
    assert taken["completed_at"] is not None
    assert len(runs) == 1


def test_a_long_analysis_renews_its_lease(engine: Engine) -> None:
    model_id, _, _ = run_scenario(engine, "steady", windows=1, per_node=250)
    lease = CONFIG.lease
    ticks = iter(range(1_000))
    start = utcnow()
    # Every look at the clock finds half a lease gone: without renewal the lease would have
    # expired twice over before the results are stored.
    worker = Worker(engine, CONFIG, clock=lambda: start + next(ticks) * lease / 2)

    assert worker.run_due(now=NOW) == 1

    with engine.connect() as conn:
        held = leases.lease_info(conn, analysis_key(model_id, Window(T0, T0 + WINDOW)))
    assert held is not None and held["completed_at"] is not None
    assert held["attempts"] == 1
    assert held["expires_at"] > start + 2 * lease  # renewed on the way
