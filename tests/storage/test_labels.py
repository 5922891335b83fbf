"""Window labels: every labelled record of the window's batches, by row key, exactly decoded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from monitor.storage import labels, models, nodes, tables
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels, window_labels
from monitor.storage.payload import row_key
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.tables import batches

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def store(engine: Engine, model: str, node: str, minutes: list[int]) -> int:
    """One batch of records ``<node>-<minute>`` (request id ``r-<node>-<minute>``); its id."""
    with begin_write(engine) as conn:
        model_row = models.find_model(conn, model) or models.add_model(conn, model)
        known = {n.name: n.id for n in nodes.list_nodes(conn)}
        node_id = known[node] if node in known else nodes.add_node(conn, node)[0].id
        rows = [
            {
                "id": f"{node}-{m}",
                "request_id": f"r-{node}-{m}",
                "ts": (T0 + timedelta(minutes=m)).timestamp(),
                "features": {"x": m},
                "prediction": "ok",
            }
            for m in minutes
        ]
        result = insert_batch(
            conn,
            node_id=node_id,
            model_id=model_row.id,
            model_version_id=models.version_id(conn, model_row.id, "1"),
            batch_uid=None,
            batch=prepare_batch(rows),
        )
        assert result.batch_id is not None
        return result.batch_id


def label(engine: Engine, model: str, values: dict[str, object]) -> None:
    with begin_write(engine) as conn:
        model_id = models.get_model(conn, model).id
        upsert_labels(
            conn,
            model_id=model_id,
            node_id=None,
            rows=[{"request_id": k, "label": v, "ts": None} for k, v in values.items()],
        )


def read(engine: Engine, model: str, start: int, end: int) -> dict[int, object]:
    with engine.connect() as conn:
        return window_labels(
            conn,
            models.get_model(conn, model).id,
            T0 + timedelta(minutes=start),
            T0 + timedelta(minutes=end),
        )


@pytest.mark.parametrize("labels_first", [True, False], ids=["from-labels", "from-records"])
def test_window_labels_are_the_labels_of_the_windows_batches_by_row_key(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, labels_first: bool
) -> None:
    # Both join orders (SQLite picks one by counting) must find the same labels.
    monkeypatch.setattr(labels, "_fewer_labels_than_records", lambda *_: labels_first)
    first = store(engine, "m", "a", [0, 1, 2])
    second = store(engine, "m", "b", [5, 6])
    store(engine, "m", "a", [40, 41])  # a batch outside the window
    store(engine, "other", "c", [1, 2])  # another model's records, same minutes
    label(
        engine,
        "m",
        {
            "r-a-0": "fail",
            "r-a-2": {"class": "ok", "score": 0.5},
            "r-b-6": 3,
            "r-b-5": "fail",
            "r-a-40": "ok",
            "unknown": "ok",
        },
    )
    label(engine, "other", {"r-c-1": "ok"})

    found = read(engine, "m", 0, 30)

    assert found == {
        row_key(first, 0): "fail",
        row_key(first, 2): {"class": "ok", "score": 0.5},
        row_key(second, 0): "fail",
        row_key(second, 1): 3,
    }


def test_a_window_without_labels_has_none(engine: Engine) -> None:
    store(engine, "m", "a", [0, 1])

    assert read(engine, "m", 0, 30) == {}


def test_the_join_starts_from_the_labels_only_when_they_are_fewer_than_the_records(
    engine: Engine,
) -> None:
    store(engine, "m", "a", [0, 1, 2, 3])
    store(engine, "m", "a", [50, 51, 52, 53, 54, 55])  # outside the window: not counted

    def fewer() -> bool:
        with engine.connect() as conn:
            model_id = models.get_model(conn, "m").id
            in_window = select(batches.c.id).where(
                batches.c.model_id == model_id,
                batches.c.max_ts >= T0,
                batches.c.min_ts < T0 + timedelta(minutes=30),
            )
            return labels._fewer_labels_than_records(conn, model_id, in_window)

    label(engine, "m", {"r-a-0": "ok", "r-a-1": "ok", "r-a-2": "fail"})
    assert fewer()  # 3 labels, 4 records in the window
    label(engine, "m", {"r-a-50": "ok", "r-a-51": "ok"})
    assert not fewer()  # 5 labels (counted no further than 4)


def node_label(engine: Engine, model: str, node: str, values: dict[str, object]) -> None:
    """Labels sent with ``node``'s token: they name that node's records only."""
    with begin_write(engine) as conn:
        upsert_labels(
            conn,
            model_id=models.get_model(conn, model).id,
            node_id=nodes.get_node(conn, node).id,
            rows=[{"request_id": k, "label": v, "ts": None} for k, v in values.items()],
        )


def shared_request_ids(engine: Engine) -> tuple[int, int]:
    """Nodes a and b each hold a record with request id ``r-shared`` (at minutes 0 and 5);
    their batch ids."""
    ids = []
    for minute, node in ((0, "a"), (5, "b")):
        with begin_write(engine) as conn:
            model_row = models.find_model(conn, "m") or models.add_model(conn, "m")
            node_id = nodes.add_node(conn, node)[0].id
            result = insert_batch(
                conn,
                node_id=node_id,
                model_id=model_row.id,
                model_version_id=models.version_id(conn, model_row.id, "1"),
                batch_uid=None,
                batch=prepare_batch(
                    [
                        {
                            "id": f"{node}-0",
                            "request_id": "r-shared",
                            "ts": (T0 + timedelta(minutes=minute)).timestamp(),
                            "features": {"x": 1},
                            "prediction": "ok",
                        }
                    ]
                ),
            )
            assert result.batch_id is not None
            ids.append(result.batch_id)
    return ids[0], ids[1]


@pytest.mark.parametrize("labels_first", [True, False], ids=["from-labels", "from-records"])
def test_a_node_labels_only_its_own_records(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, labels_first: bool
) -> None:
    monkeypatch.setattr(labels, "_fewer_labels_than_records", lambda *_: labels_first)
    batch_a, batch_b = shared_request_ids(engine)
    node_label(engine, "m", "a", {"r-shared": "ok"})
    node_label(engine, "m", "b", {"r-shared": "fail"})  # b's label does not replace a's

    assert read(engine, "m", 0, 30) == {row_key(batch_a, 0): "ok", row_key(batch_b, 0): "fail"}


@pytest.mark.parametrize("labels_first", [True, False], ids=["from-labels", "from-records"])
def test_a_back_office_label_names_every_nodes_record_and_wins_over_the_nodes_own(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, labels_first: bool
) -> None:
    monkeypatch.setattr(labels, "_fewer_labels_than_records", lambda *_: labels_first)
    batch_a, batch_b = shared_request_ids(engine)
    node_label(engine, "m", "a", {"r-shared": "ok"})
    label(engine, "m", {"r-shared": "fail"})

    assert read(engine, "m", 0, 30) == {row_key(batch_a, 0): "fail", row_key(batch_b, 0): "fail"}


def test_a_retried_label_replaces_the_nodes_earlier_one_and_nobody_elses(engine: Engine) -> None:
    shared_request_ids(engine)
    node_label(engine, "m", "a", {"r-shared": "ok"})
    node_label(engine, "m", "b", {"r-shared": "ok"})
    node_label(engine, "m", "a", {"r-shared": "fail"})

    with engine.connect() as conn:
        stored = conn.execute(select(tables.labels.c.node_id, tables.labels.c.label)).all()
        ids = {n.name: n.id for n in nodes.list_nodes(conn)}
    assert sorted(stored) == sorted([(ids["a"], "fail"), (ids["b"], "ok")])


def test_labelled_since_finds_only_the_labelled_nodes_batch(engine: Engine) -> None:
    batch_a, _ = shared_request_ids(engine)
    node_label(engine, "m", "a", {"r-shared": "ok"})

    with engine.connect() as conn:
        spans = labels.labelled_since(conn, T0 - timedelta(days=365 * 10))
        a_batch = conn.execute(select(batches).where(batches.c.id == batch_a)).one()
    assert [(s.min_ts, s.max_ts) for s in spans] == [(a_batch.min_ts, a_batch.max_ts)]
