"""One window, one verdict: what storage.results holds is what the CLI prints, what the report
shows and what the demo narrates, at the fleet and at the drifting site."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.demo import window_line
from monitor.jobs.analysis import Worker
from monitor.storage import results
from tests.jobs.fleetdata import WINDOW
from tests.jobs.test_analysis import CONFIG, NOW, T0, run_scenario


def report(db_url: str, out: Path, scope: str, capsys: pytest.CaptureFixture[str]) -> str:
    start = (T0 + 2 * WINDOW).isoformat()
    args = ["--database-url", db_url, "report", "--model", "pump-failure", "--window", start]
    assert main([*args, "--scope", scope, "--out", str(out)]) == 0
    return capsys.readouterr().out


def features_in_table(html: str) -> set[str]:
    """Features the report page's feature table marks drifted (the estimation and
    multivariate tables mark scopes the same way, so only the features table is read)."""
    table = html.split("<table id='features'>", 1)[1].split("</table>", 1)[0]
    return set(re.findall(r"<tr class='bad'><td>([^<]+)</td>", table))


def test_the_cli_the_report_and_the_demo_agree_with_the_stored_verdicts(
    engine: Engine, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_id, plans, _ = run_scenario(engine, "sensor-drift", windows=3, per_node=250)
    Worker(engine, CONFIG).run_due(now=NOW)
    with engine.connect() as conn:
        stored = results.window(conn, model_id, T0 + 2 * WINDOW)
    assert stored is not None
    fleet = stored.drifted_features()
    site = stored.drifted_features("site", "site-a")
    assert "temperature_c" in fleet and "temperature_c" in site  # the scenario's drift
    assert stored.drift_of("site", "site-a").result.drifted is True
    assert stored.drift_of("site", "site-b").result.drifted is False

    for scope, expected in (("fleet", fleet), ("site:site-a", site)):
        printed = report(db_url, tmp_path / "r.html", scope, capsys)
        html = (tmp_path / "r.html").read_text()
        label = scope.replace(":", " ")
        assert f"{label}: drift detected on {', '.join(expected)}" in printed
        prediction_rows = {f for f in features_in_table(html) if f == "prediction"}
        assert features_in_table(html) - prediction_rows - _probabilities(html) == set(expected)
        assert f"Drift detected: {', '.join(expected)}" in html
    quiet = report(db_url, tmp_path / "b.html", "site:site-b", capsys)
    assert "site site-b: no drift" in quiet

    told = window_line(stored, {p.name for p in plans})
    assert f"fleet drifts on {', '.join(fleet)}" in told
    assert f"site-a drifts on {', '.join(site)}" in told
    drifting = [s for s in stored.drift if s.scope_kind == "node" and s.result.drifted]
    assert f"{len(drifting)}/{len(plans)} nodes drifting" in told


def _probabilities(html: str) -> set[str]:
    return {f for f in features_in_table(html) if f.startswith("proba:")}
