"""A window's report as HTML (``build_report``): the page ``write_report`` writes, and, for a
reader that must not write (the dashboard), Evidently's part made without keeping its
snapshot."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from monitor.jobs.analysis import Worker
from monitor.jobs.reports import build_report, write_report
from monitor.storage import results
from tests.jobs.test_analysis import CONFIG, NOW, run_scenario


def test_the_built_report_is_the_page_write_report_writes(engine: Engine, tmp_path: Path) -> None:
    model_id, _, _ = run_scenario(engine, "sensor-drift", windows=2, per_node=150)
    Worker(engine, CONFIG).run_due(now=NOW)

    with engine.connect() as conn:
        built = build_report(conn, "pump-failure", scope="site:site-a", evidently=False)
        written = write_report(
            conn, "pump-failure", out=str(tmp_path / "r.html"), scope="site:site-a", evidently=False
        )
        latest = results.latest_window_start(conn, model_id)

    assert written.path.read_text(encoding="utf-8") == built.html
    assert (built.window_start, built.scope_kind, built.scope_key) == (latest, "site", "site-a")
    assert (written.drifted, written.drifted_features) == (built.drifted, built.drifted_features)
    assert built.drifted is True and "temperature_c" in built.drifted_features
    assert built.file_name == f"report-pump-failure-{latest:%Y%m%dT%H%M}.html"
    assert "scope: <b>site site-a</b>" in built.html


def test_a_report_built_without_keeping_its_snapshot_writes_nothing(engine: Engine) -> None:
    model_id, _, _ = run_scenario(engine, "sensor-drift", windows=1, per_node=150)
    Worker(engine, CONFIG).run_due(now=NOW)
    with engine.connect() as conn:
        start = results.latest_window_start(conn, model_id)
        assert start is not None
        stored = results.window(conn, model_id, start)
        assert stored is not None
        fleet = stored.drift_of()

        unkept = build_report(conn, "pump-failure", keep_snapshot=False)
        after_unkept = results.snapshot(conn, fleet.id)
        kept = build_report(conn, "pump-failure")
    with engine.connect() as conn:  # the snapshot is kept by a write of its own
        after_kept = results.snapshot(conn, fleet.id)

    assert "id='evidently'" in unkept.html and "id='evidently'" in kept.html
    assert after_unkept is None
    assert after_kept is not None
