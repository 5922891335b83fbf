"""Window loading: exactly the model's records in [start, end), for some nodes or all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.schema import feature_name
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.windows import load_window

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
