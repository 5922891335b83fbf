"""A model of one's own, end to end through the command line (issue 13's first acceptance).

A reference-only model registered from CSV, a year of history imported with monthly windows:
the months after a shift injected into one feature are flagged on that feature, the months
before are not, and accuracy per month equals scikit-learn's on the same rows (labels from the
import). SQLite and PostgreSQL; the commands are the README walk-through's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from monitor.cli import main
from tests.e2e import history


def _run(db_url: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["--database-url", db_url, *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_a_year_of_ones_own_history_is_judged_month_by_month(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = history.write(tmp_path)
    run = lambda *args: _run(db_url, capsys, *args)  # noqa: E731
    run("db", "upgrade")
    run("models", "add", "compressor-faults")
    registered = run(
        "models", "register", "compressor-faults", "--version", "2025.1",
        "--reference", str(written.reference), "--categorical", "error_code",
    )  # fmt: skip
    # The schema is printed: the int-coded error code as a category, the label as the label.
    assert any(line.split() == ["error_code", "feature", "categorical"] for line in
               registered.splitlines())  # fmt: skip
    assert any(line.split()[:2] == ["label", "label"] for line in registered.splitlines())
    run("models", "window", "compressor-faults", "--calendar", "month", "--timezone",
        "Europe/Berlin")  # fmt: skip
    imported = run(
        "import", str(written.history), "--model", "compressor-faults", "--version", "2025.1",
        "--node-column", "node",
    )  # fmt: skip
    assert f"{len(written.frame):,} records stored" in imported
    assert f"{len(written.frame):,} labels stored" in imported
    analysed = run("analyse", "--model", "compressor-faults", "--from", "2025-01-01", "--to",
                   "2026-01-01")  # fmt: skip
    assert "12 window(s) analysed; drift in 6" in analysed

    document = json.loads(
        run(
            "results",
            "--model",
            "compressor-faults",
            "--since",
            "2024-12-01",
            "--limit",
            "100",
            "--json",
        )
    )
    windows = sorted(document["windows"], key=lambda w: w["window_start"])
    assert len(windows) == 12
    frame = written.frame.assign(ts=pd.to_datetime(written.frame["ts"], utc=True))
    for window in windows:
        start = datetime.fromisoformat(window["window_start"])
        end = datetime.fromisoformat(window["window_end"])
        # Berlin's months, in UTC: each starts at 22:00 or 23:00 UTC the day before.
        assert start.hour in (22, 23) and start.minute == 0, start
        scopes = {s["scope"]: s for s in window["scopes"]}
        fleet = scopes["fleet"]
        shifted = end > history.SHIFT_FROM + (end - start) / 2
        assert fleet["drift"]["drifted"] is shifted, (start, fleet["drift"])
        assert fleet["drift"]["drifted_features"] == (["temperature"] if shifted else [])
        for node in history.NODES:
            node_drift = scopes[f"node:{node}"]["drift"]
            assert node_drift["drifted_features"] == (["temperature"] if shifted else []), node
        rows = frame[(frame["ts"] >= start) & (frame["ts"] < end)]
        assert fleet["performance"]["n_labelled"] == len(rows)
        assert fleet["performance"]["accuracy"] == pytest.approx(
            accuracy_score(rows["label"], rows["prediction"]), abs=1e-12
        )


def test_a_node_of_110_rows_a_month_is_flagged_within_two_months_and_a_clean_one_never(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two years of monthly windows: a node sending 110 rows a month (too few for a verdict in
    one window) whose temperature moves far past the threshold from 2025 on is flagged within
    two months; a clean node of the same size is never flagged in 24 months."""
    rng = np.random.default_rng(11)
    reference = history.rows(rng, 2000, False)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    change = datetime(2025, 1, 1, tzinfo=UTC)
    parts = []
    for month in range(24):
        start = pd.Timestamp(datetime(2024 + month // 12, month % 12 + 1, 1, tzinfo=UTC))
        seconds = (start + pd.offsets.MonthBegin(1) - start).total_seconds()
        for node, n in (("steady", 110), ("shifting", 110), ("big", 600)):
            part = history.rows(rng, n, node == "shifting" and start >= pd.Timestamp(change))
            part.insert(0, "ts", start + pd.to_timedelta(rng.uniform(0, seconds, n), unit="s"))
            part.insert(1, "node", node)
            parts.append(part)
    pd.concat(parts, ignore_index=True).to_parquet(tmp_path / "small.parquet", index=False)
    run = lambda *args: _run(db_url, capsys, *args)  # noqa: E731
    run("db", "upgrade")
    run("models", "add", "small-fleet")
    run("models", "register", "small-fleet", "--version", "1", "--reference",
        str(tmp_path / "reference.csv"))  # fmt: skip
    run("models", "window", "small-fleet", "--calendar", "month")
    run("import", str(tmp_path / "small.parquet"), "--model", "small-fleet", "--version", "1",
        "--node-column", "node")  # fmt: skip
    run("analyse", "--model", "small-fleet", "--from", "2024-01-01", "--to", "2026-01-01")

    document = json.loads(
        run(
            "results", "--model", "small-fleet", "--since", "2024-01-01", "--limit", "100", "--json"
        )
    )
    windows = sorted(document["windows"], key=lambda w: w["window_start"])
    assert len(windows) == 24
    verdicts: dict[str, list[bool | None]] = {"steady": [], "shifting": []}
    for window in windows:
        scopes = {s["scope"]: s for s in window["scopes"]}
        for node, seen in verdicts.items():
            drift = scopes[f"node:{node}"]["drift"]
            assert drift["n_rows"] >= 110
            seen.append(drift["drifted"])
            if drift["drifted"] is not None:
                # Judged on this month and the one before it: pooled, and it says so.
                assert drift["span_start"] is not None and drift["n_rows"] >= 200
    assert True not in verdicts["steady"]
    assert verdicts["steady"].count(False) >= 23  # only the first month has nothing to pool
    first_flagged = verdicts["shifting"].index(True)
    assert 12 <= first_flagged <= 13, verdicts["shifting"]  # January or February 2025
    assert True not in verdicts["shifting"][:12]
