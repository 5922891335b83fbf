"""Window loading: exactly the model's records in [start, end), for some nodes or all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.schema import feature_name
from monitor.storage import models, nodes, windows
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.windows import load_window, load_window_table

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def store(engine: Engine, node: str, minutes: list[float], model: str = "m", **features) -> None:
    with begin_write(engine) as conn:
        model_row = models.find_model(conn, model) or models.add_model(conn, model)
        try:
            node_id = nodes.get_node(conn, node).id
        except Exception:
            node_id = nodes.add_node(conn, node)[0].id
        rows = [
            {
                "id": f"{node}-{m}",
                "ts": at(m).timestamp(),
                "features": {"x": m, **features},
                "prediction": 1,
            }
            for m in minutes
        ]
        insert_batch(
            conn,
            node_id=node_id,
            model_id=model_row.id,
            model_version_id=models.version_id(conn, model_row.id, "1"),
            batch_uid=None,
            batch=prepare_batch(rows),
        )


def window(engine: Engine, start: float, end: float, model: str = "m", node_names=None):
    with engine.connect() as conn:
        node_ids = None
        if node_names is not None:
            node_ids = [nodes.get_node(conn, n).id for n in node_names]
        return load_window(
            conn, models.get_model(conn, model).id, at(start), at(end), node_ids=node_ids
        )


def test_a_window_holds_records_with_start_le_ts_lt_end(engine: Engine) -> None:
    store(engine, "a", [0, 5, 10, 15])  # one batch straddling the window's edges

    frame = window(engine, 5, 15)

    assert frame["feature:x"].tolist() == [5.0, 10.0]


def test_a_window_of_some_nodes(engine: Engine) -> None:
    store(engine, "a", [1, 2])
    store(engine, "b", [1, 2, 3])
    store(engine, "c", [1])

    frame = window(engine, 0, 60, node_names=["b", "c"])

    with engine.connect() as conn:
        b, c = nodes.get_node(conn, "b").id, nodes.get_node(conn, "c").id
    assert sorted(frame["node_id"].tolist()) == sorted([b, b, b, c])


def test_other_models_are_not_in_the_window(engine: Engine) -> None:
    store(engine, "a", [1, 2])
    store(engine, "a2", [1, 2, 3], model="other")

    assert len(window(engine, 0, 60)) == 2
    assert len(window(engine, 0, 60, model="other")) == 3


def test_an_empty_window_has_the_meta_columns(engine: Engine) -> None:
    store(engine, "a", [1])

    frame = window(engine, 30, 60)

    assert len(frame) == 0
    assert list(frame.columns) == [
        "row_key",
        "ts",
        "node_id",
        "model_version_id",
        "latency_ms",
        "prediction",
    ]


def test_text_features_load_as_categoricals(engine: Engine) -> None:
    store(engine, "a", [1, 2], machine="press")

    frame = window(engine, 0, 60)

    assert frame["feature:machine"].dtype == "category"
    assert [feature_name(c) for c in frame.columns if feature_name(c)] == ["x", "machine"]


def converted_at_once(engine: Engine, start: float, end: float) -> pd.DataFrame:
    """The window as one Arrow table converted by pyarrow: what load_window must equal."""
    with engine.connect() as conn:
        table = load_window_table(conn, models.get_model(conn, "m").id, at(start), at(end))
    return table.to_pandas(strings_to_categorical=True, split_blocks=True)


def test_a_window_built_batch_by_batch_equals_arrow_converting_it_at_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two batches per group, so categories, nulls and cut rows cross group boundaries.
    monkeypatch.setattr(windows, "_GROUP", 2)
    store_rows(engine, "a", [(0, "pink", 1.0), (1, "red", None), (2, "red", 0.5)])  # pink: cut
    store_rows(engine, "b", [(3, "blue", 1.5), (4, None, None)])
    store_rows(engine, "a", [(5, None, 2.0), (6, None, None)])  # colour all null: null type
    store_rows(engine, "c", [(7, "green", None), (8, "blue", 3.0), (30, "grey", 1.0)])  # 30: cut
    store_rows(engine, "b", [(9, "red", 3.25)])
    # The general path must not be needed here.
    monkeypatch.setattr(windows, "load_window_table", None)

    frame = window(engine, 2, 20)

    monkeypatch.undo()
    pd.testing.assert_frame_equal(frame, converted_at_once(engine, 2, 20), check_exact=True)
    assert frame["feature:colour"].cat.categories.tolist() == ["red", "blue", "green"]
    missing = [False, False, True, True, True, False, False, False]
    assert frame["feature:colour"].isna().tolist() == missing
    assert frame["feature:size"].isna().sum() == 3


def store_rows(engine: Engine, node: str, rows: list[tuple[float, str | None, float | None]]):
    """One batch whose records have a text and a number feature, either possibly missing."""
    with begin_write(engine) as conn:
        model_row = models.find_model(conn, "m") or models.add_model(conn, "m")
        known = {n.name: n.id for n in nodes.list_nodes(conn)}
        node_id = known[node] if node in known else nodes.add_node(conn, node)[0].id
        records = [
            {
                "id": f"{node}-{m}",
                "ts": at(m).timestamp(),
                "features": {"colour": colour, "size": size},
                "prediction": "ok",
            }
            for m, colour, size in rows
        ]
        insert_batch(
            conn,
            node_id=node_id,
            model_id=model_row.id,
            model_version_id=models.version_id(conn, model_row.id, "1"),
            batch_uid=None,
            batch=prepare_batch(records),
        )


def test_batches_whose_columns_differ_load_as_arrow_concatenates_them(engine: Engine) -> None:
    store(engine, "a", [1, 2], colour="red")
    store(engine, "b", [3], colour=7, extra="x")  # colour as a number, a new column

    frame = window(engine, 0, 60)

    pd.testing.assert_frame_equal(frame, converted_at_once(engine, 0, 60), check_exact=True)
    assert frame["feature:colour"].tolist() == ["red", "red", "7"]


def test_a_window_whose_batches_hold_no_record_inside_it_has_their_columns(
    engine: Engine,
) -> None:
    store(engine, "a", [0, 30], colour="red")

    frame = window(engine, 10, 20)

    pd.testing.assert_frame_equal(frame, converted_at_once(engine, 10, 20), check_exact=True)
    assert len(frame) == 0


def test_a_window_that_changes_columns_midway_loads_as_arrow_concatenates_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One batch per group: the change shows up while the next group is being fetched.
    monkeypatch.setattr(windows, "_GROUP", 1)
    store(engine, "a", [1, 2], colour="red")
    store(engine, "b", [3], colour="blue", extra=1.5)
    store(engine, "c", [4], colour="green")

    frame = window(engine, 0, 60)

    pd.testing.assert_frame_equal(frame, converted_at_once(engine, 0, 60), check_exact=True)
    assert frame["feature:extra"].tolist()[2] == 1.5
