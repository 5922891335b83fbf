"""The report opens in a real browser and shows the drifted features once its scripts ran."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine

from monitor.jobs.analysis import Worker
from monitor.jobs.reports import write_report
from monitor.storage.engine import make_engine
from tests.jobs.test_analysis import CONFIG, NOW, run_scenario

if TYPE_CHECKING:
    from tests.browser import Chromium

pytest_plugins = ("tests.browser",)
pytestmark = pytest.mark.browser


def test_the_report_opens_in_a_browser_and_names_what_drifted(
    chromium: Chromium, tmp_path: Path
) -> None:
    from monitor.storage import migrations

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrations.upgrade(url)
    engine: Engine = make_engine(url)
    run_scenario(engine, "sensor-drift")
    Worker(engine, CONFIG).run_due(now=NOW)
    with engine.connect() as conn:
        written = write_report(conn, "pump-failure", "latest", str(tmp_path / "report.html"))

    dom = chromium.dump_dom(written.path.as_uri(), virtual_time_budget_ms=15_000)
    shot = chromium.screenshot(written.path.as_uri(), tmp_path / "report.png")

    assert "temperature_c" in dom and "vibration_mm_s" in dom
    assert "Drift detected: " in dom and "<iframe" in dom  # verdicts, then Evidently's plots
    assert "Traceback" not in dom
    assert shot.stat().st_size > 10_000
