"""History import: a Parquet or CSV file becomes records of a model version, through the
collector's storage path, exactly once, with its labels joined and its nodes created."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.commands import models
from monitor.commands.imports import ImportOptions, _batch_bounds, import_history
from monitor.errors import NotFound, ValidationFailed
from monitor.storage import nodes as node_storage
from monitor.storage.labels import window_labels
from monitor.storage.models import list_versions
from monitor.storage.records import count_records
from monitor.storage.windows import load_window

MODEL = "pump"
T0 = datetime(1995, 3, 1, tzinfo=UTC)


def history(rows: int = 120, nodes: int = 3) -> pd.DataFrame:
    """Rows of three nodes over two hours of 1995, with request ids, labels on every other
    row, five numeric features, one text feature and a class probability."""
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "ts": [T0 + timedelta(seconds=60 * i) for i in range(rows)],
            "node": [f"shop-{i % nodes}" for i in range(rows)],
            "request_id": [f"req-{i}" for i in range(rows)],
            **{f"f{j}": rng.normal(size=rows) for j in range(5)},
            "machine": rng.choice(["press", "lathe"], rows),
            "prediction": rng.choice(["ok", "fail"], rows),
            "proba:fail": rng.uniform(size=rows),
            "label": [("ok" if i % 4 else "fail") if i % 2 == 0 else None for i in range(rows)],
        }
    )


def options(**overrides: object) -> ImportOptions:
    given = {"model": MODEL, "version": "1", "node_column": "node", **overrides}
    return ImportOptions(**given)  # type: ignore[arg-type]


@pytest.fixture
def pump(engine: Engine) -> int:
    return models.add_model(engine, MODEL).id


def test_a_parquet_file_is_stored_with_its_nodes_labels_and_times(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    path = tmp_path / "history.parquet"
    history().to_parquet(path)
    steps: list[str] = []

    summary = import_history(engine, path, options(), announce=steps.append)

    assert (summary.rows, summary.stored, summary.duplicates, summary.rejected) == (120, 120, 0, 0)
    assert summary.labels == 60
    assert sorted(summary.nodes_created) == ["shop-0", "shop-1", "shop-2"]
    assert (summary.first_ts, summary.last_ts) == (T0, T0 + timedelta(minutes=119))
    assert "6 feature(s): f0, f1, f2, f3, f4, machine" in steps[0]
    assert "created 3 node(s)" in steps[1]
    with engine.connect() as conn:
        assert count_records(conn, model_id=pump) == 120
        frame = load_window(conn, pump, T0, T0 + timedelta(hours=2))
        labels = window_labels(conn, pump, T0, T0 + timedelta(hours=2))
        created = node_storage.get_node(conn, "shop-1")
        assert list_versions(conn, pump) == ["1"]
    assert len(frame) == 120
    assert sorted(c for c in frame.columns if c.startswith("feature:")) == [
        "feature:f0",
        "feature:f1",
        "feature:f2",
        "feature:f3",
        "feature:f4",
        "feature:machine",
    ]
    assert "proba:fail" in frame.columns
    assert frame["ts"].min() == pd.Timestamp(T0)
    # Each label joined its own record (by request id, on its node).
    assert len(labels) == 60
    assert sorted(set(labels.values())) == ["fail", "ok"]
    # A node made for history holds no usable token.
    assert created.revoked_at is not None


def test_a_second_import_of_the_same_rows_stores_nothing(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    path = tmp_path / "history.parquet"
    history().to_parquet(path)
    import_history(engine, path, options())

    again = import_history(engine, path, options())

    assert (again.rows, again.stored, again.duplicates, again.labels) == (120, 0, 120, 0)
    assert again.nodes_created == []
    with engine.connect() as conn:
        assert count_records(conn, model_id=pump) == 120


def test_without_request_ids_the_same_bytes_under_another_name_store_nothing(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    path = tmp_path / "history.csv"
    history().drop(columns=["request_id", "label"]).to_csv(path, index=False)
    copy = tmp_path / "copy-of-history.csv"
    shutil.copy(path, copy)

    first = import_history(engine, path, options(node_column=None, node="plant"))
    second = import_history(engine, copy, options(node_column=None, node="plant"))

    assert (first.stored, second.stored, second.duplicates) == (120, 0, 120)
    assert first.nodes_created == ["plant"]
    with engine.connect() as conn:
        assert count_records(conn, model_id=pump) == 120


def test_a_file_that_differs_is_other_records_without_request_ids(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    frame = history().drop(columns=["request_id"])
    path = tmp_path / "history.parquet"
    frame.to_parquet(path)
    import_history(engine, path, options())
    frame.loc[0, "f0"] = 1000.0
    frame.to_parquet(path)

    changed = import_history(engine, path, options())

    assert changed.stored == 120


def test_csv_times_as_iso_text_with_offsets_or_epoch_seconds(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    iso = pd.DataFrame(
        {
            "when": ["1995-03-01T00:00:00Z", "1995-03-01T02:00:00+01:00", "1995-03-01 01:30"],
            "prediction": [1, 0, 1],
            "temperature": [70.5, 71, 72],
        }
    )
    iso.to_csv(tmp_path / "iso.csv", index=False)
    epoch = iso.assign(when=[T0.timestamp() + 7200 + i for i in range(3)])
    epoch.to_csv(tmp_path / "epoch.csv", index=False)

    by_text = import_history(
        engine, tmp_path / "iso.csv", options(node_column=None, ts_column="when")
    )
    by_number = import_history(
        engine, tmp_path / "epoch.csv", options(node_column=None, ts_column="when")
    )

    assert (by_text.stored, by_number.stored) == (3, 3)
    assert (by_text.first_ts, by_text.last_ts) == (T0, T0 + timedelta(minutes=90))
    assert by_number.first_ts == T0 + timedelta(hours=2)
    with engine.connect() as conn:
        frame = load_window(conn, pump, T0, T0 + timedelta(days=1))
    assert sorted(frame["feature:temperature"].tolist()) == [70.5, 70.5, 71.0, 71.0, 72.0, 72.0]


def test_rows_that_break_the_wire_rules_are_rejected_and_counted(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    frame = history(rows=10)
    frame["f0"] = frame["f0"].astype(float)
    frame.loc[3, "f0"] = float("inf")
    frame.loc[5, "prediction"] = None
    frame.loc[6, "f1"] = float("nan")  # missing, not wrong
    path = tmp_path / "history.parquet"
    frame.to_parquet(path)

    summary = import_history(engine, path, options())

    assert (summary.rows, summary.stored, summary.rejected) == (10, 8, 2)
    assert summary.first_rejection == "row 3: f0: not a finite number"
    assert "2 rows rejected (first: row 3: f0: not a finite number)" in summary.line()


def test_the_version_is_created_and_a_request_id_twice_is_one_record(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    frame = history(rows=6, nodes=1)
    frame.loc[4, "request_id"] = "req-1"
    path = tmp_path / "history.parquet"
    frame.to_parquet(path)

    summary = import_history(engine, path, options(version="2024.1"))

    assert (summary.stored, summary.duplicates) == (5, 1)
    with engine.connect() as conn:
        assert list_versions(conn, pump) == ["2024.1"]


def test_a_missing_time_column_is_refused_naming_the_columns(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    path = tmp_path / "history.parquet"
    history().drop(columns=["ts"]).to_parquet(path)

    with pytest.raises(ValidationFailed) as refused:
        import_history(engine, path, options())

    assert "no ts column 'ts' in the file (columns: node, request_id, f0" in refused.value.message
    assert "name it with --ts-column" in refused.value.message


def test_an_unknown_model_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "history.parquet"
    history().to_parquet(path)

    with pytest.raises(NotFound, match="no model named 'pump'"):
        import_history(engine, path, options())


def test_batches_hold_one_node_and_end_at_window_boundaries_once_full_enough() -> None:
    nodes = np.array([0, 0, 0, 0, 0, 1, 1])
    windows = np.array([0, 0, 1, 2, 2, 2, 3])

    assert _batch_bounds(nodes, windows, batch_rows=10, merge_rows=2) == [(0, 2), (2, 5), (5, 7)]
    assert _batch_bounds(nodes, windows, batch_rows=2, merge_rows=100) == [
        (0, 2),
        (2, 4),
        (4, 5),
        (5, 7),
    ]


def test_an_export_overlapping_an_imported_one_stores_only_its_new_requests_and_labels(
    engine: Engine, pump: int, tmp_path: Path
) -> None:
    rows = history(rows=120, nodes=1)
    rows.iloc[:50].to_parquet(tmp_path / "january.parquet")
    rows.to_parquet(tmp_path / "january-and-february.parquet")
    import_history(engine, tmp_path / "january.parquet", options())

    overlapping = import_history(engine, tmp_path / "january-and-february.parquet", options())

    assert (overlapping.stored, overlapping.duplicates) == (70, 50)
    assert overlapping.labels == 35  # the labels of the 70 new records, every other row
    with engine.connect() as conn:
        assert count_records(conn, model_id=pump) == 120
        labels = window_labels(conn, pump, T0, T0 + timedelta(hours=2))
        frame = load_window(conn, pump, T0, T0 + timedelta(hours=2))
    assert len(labels) == 60
    assert len(frame) == 120
