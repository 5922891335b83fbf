"""Evidently's HTML report and snapshot of a window: drifted features named, sample
reproducible, numbers equal to the engine's on that sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.analysis import ReferenceProfile, analyse_drift, evidently_report, render_snapshot
from tests.analysis.synthetic import frame

SHIFT = {"x00": 0.8, "x03": 0.8, "c0": 0.8}


def detected_in_html(html: str) -> set[str]:
    """Columns the HTML's drift table marks "Detected"."""
    found = set()
    for piece in html.split('"column_name": "')[1:]:
        name = piece.split('"', 1)[0]
        verdict = piece.split('"data_drift": "', 1)
        if len(verdict) == 2 and verdict[1].startswith("Detected"):
            found.add(name)
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    reference, current = frame(3_000, seed=1), frame(3_000, seed=2, shift=SHIFT)
    path = tmp_path_factory.mktemp("report") / "drift.html"
    made = evidently_report(reference, current, max_rows=2_000, seed=7)
    made.save_html(path)
    return reference, current, path, made


def test_the_html_names_the_drifted_features(report) -> None:
    _, _, path, made = report
    html = Path(path).read_text(encoding="utf-8")
    assert detected_in_html(html) == set(SHIFT) == set(made.drifted_columns)
    assert '"column_name": "x01"' in html  # clean features are listed too, not detected
    assert made.n_reference == made.n_current == 2_000
    assert made.share_drifted == pytest.approx(3 / 28)
    assert detected_in_html(made.html()) == set(SHIFT)


def test_the_stored_snapshot_renders_the_same_report(report, tmp_path: Path) -> None:
    _, _, _, made = report
    stored = made.snapshot_json().encode()
    render_snapshot(stored, tmp_path / "again.html")
    assert detected_in_html((tmp_path / "again.html").read_text(encoding="utf-8")) == set(SHIFT)
    metrics = made.metrics()["metrics"]
    assert json.dumps(metrics)  # plain JSON for dashboards
    assert {m["config"].get("column") for m in metrics} >= {"x00", "c0", "prediction"}


def test_the_report_samples_reproducibly_and_agrees_with_the_engine(report) -> None:
    reference, current, _, made = report
    # The documented sample: DataFrame.sample(n=max_rows, random_state=seed) on each side.
    ref_sample = reference.sample(n=2_000, random_state=7)
    cur_sample = current.sample(n=2_000, random_state=7)
    result = analyse_drift(ReferenceProfile.build(ref_sample), cur_sample, {})
    for metric in made.metrics()["metrics"]:
        column = metric["config"].get("column")
        if column is not None:
            assert result.row(column).statistic == pytest.approx(metric["value"], abs=1e-6)
