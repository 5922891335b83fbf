"""Analysis results: written in bulk from columns, read back as the schema's typed rows; a
recomputation replaces its kind only; node scopes are linked to their node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from monitor.schema import DriftFeature, DriftScope, PerformanceScope, ResultTable
from monitor.storage import models, nodes, results
from monitor.storage.engine import begin_write
from monitor.storage.results import KindResults

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=15)


def drift_results() -> KindResults:
    scopes = [
        DriftScope("fleet", "", "ok", 5_000, 2, 1, 0.5, True, False, 0.5),
        DriftScope("site", "plant-1", "ok", 2_000, 2, 0, 0.0, False, None, 0.0),
        DriftScope("node", "n-7", "insufficient_data", 12, 0, 0, None, None, None, None),
    ]
    features = [
        DriftFeature("fleet", "", "temperature", "feature", "numerical", "wasserstein",
                     "ks-asymptotic", 0.31, 0.1, 1e-9, 1e-8, True, True, 5_000, 900, "ok"),
        DriftFeature("fleet", "", "machine_type", "feature", "categorical", "jensenshannon",
                     "chi2-homogeneity", 0.02, 0.1, 0.4, 0.8, False, False, 5_000, 900, "ok"),
        DriftFeature("node", "n-7", "temperature", "feature", "numerical", "wasserstein",
                     None, float("nan"), 0.1, None, None, None, None, 12, 900,
                     "insufficient_data"),
    ]  # fmt: skip
    return KindResults(
        ResultTable.from_rows(DriftScope, scopes), ResultTable.from_rows(DriftFeature, features)
    )


def performance(n_rows: int, accuracy: float) -> KindResults:
    row = PerformanceScope(
        "fleet", "", "ok", "classification", n_rows, 100, 100 / n_rows, accuracy,
        None, None, None, None, None, None,
    )  # fmt: skip
    return KindResults(ResultTable.from_rows(PerformanceScope, [row]))


def save(engine: Engine, model_id: int, found: dict[str, KindResults]) -> dict:
    with begin_write(engine) as conn:
        return results.save_window(
            conn, model_id, START, END, found, model_version_id=None, n_reference=900
        )


def test_results_round_trip_as_typed_rows(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        node, _ = nodes.add_node(conn, "n-7")
    ids = save(engine, model_id, {"drift": drift_results()})
    fleet_id = ids["drift"][("fleet", "")]
    with begin_write(engine) as conn:
        results.save_snapshot(conn, fleet_id, b'{"snapshot": 1}')

    with engine.connect() as conn:
        stored = results.window(conn, model_id, START)
        assert results.snapshot(conn, fleet_id) == b'{"snapshot": 1}'
        assert results.analysed_windows(conn, model_id) == [(START, END)]
        assert results.latest_window_start(conn, model_id) == START

    assert stored is not None
    assert [s.result for s in stored.drift] == drift_results().scopes.rows()
    assert stored.drift_of("node", "n-7").node_id == node.id
    assert stored.drift_of().n_reference == 900
    assert stored.drift_of().window_start == START and stored.drift_of().window_end == END
    fleet = stored.drift_features[fleet_id]
    assert [f.feature for f in fleet] == ["machine_type", "temperature"]
    assert fleet[1] == drift_results().features.rows()[0]  # every field, NaN stored as NULL
    node_row = stored.drift_features[ids["drift"][("node", "n-7")]][0]
    assert node_row.statistic is None and node_row.drifted is None
    assert stored.drifted_features() == ["temperature"]
    assert [s.scope_key for s in stored.drifting_scopes("fleet")] == [""]
    assert stored.drifting_scopes("site") == []


def test_numpy_columns_are_stored_as_plain_values(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
    table = drift_results().scopes
    columns = {
        name: np.array(values, dtype=object if name in ("drifted", "prediction_drifted") else None)
        for name, values in table.columns.items()
    }
    save(engine, model_id, {"drift": KindResults(ResultTable(DriftScope, columns))})

    with engine.connect() as conn:
        stored = results.drift(conn, model_id)
    assert [s.result for s in stored] == table.rows()
    assert isinstance(stored[0].result.n_rows, int)


def test_a_recomputation_replaces_only_its_kind(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
    save(engine, model_id, {"drift": drift_results(), "performance": performance(100, 0.9)})
    save(engine, model_id, {"performance": performance(150, 0.8)})

    with engine.connect() as conn:
        stored = results.performance(conn, model_id)
        drift = results.drift(conn, model_id, scope_kind="fleet")
        features = results.features(conn, "drift", [drift[0].id])

    assert [(r.result.n_rows, r.result.accuracy) for r in stored] == [(150, 0.8)]
    assert len(drift) == 1 and len(features[drift[0].id]) == 2


def test_a_large_window_is_written_in_few_statements(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
    n = 3_000
    scopes = ResultTable(
        DriftScope,
        {
            "scope_kind": ["fleet"] + ["node"] * (n - 1),
            "scope_key": [""] + [f"n{i}" for i in range(1, n)],
            "status": ["ok"] * n,
            "n_rows": np.arange(n),
            "n_features": np.full(n, 25),
            "n_drifted": np.zeros(n, np.int64),
            "share_drifted": np.zeros(n),
            "drifted": np.zeros(n, bool),
            "prediction_drifted": np.full(n, None, object),
            "evidently_share_drifted": np.full(n, np.nan),
        },
    )
    statements: list[str] = []
    from sqlalchemy import event

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        save(engine, model_id, {"drift": KindResults(scopes)})
    finally:
        event.remove(engine, "before_cursor_execute", count)

    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert 1 <= len(inserts) <= 2  # columns as arrays (PostgreSQL) or large VALUES chunks
    with engine.connect() as conn:
        assert len(results.drift(conn, model_id)) == n


def test_awkward_values_reach_postgresql_arrays_unchanged(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite takes plain parameters; the array text is PostgreSQL's alone
    columns = {
        "varchar[]": ['a "quoted" \\ value', "", "NULL", "{x,y}", " spaced ", "ü €", None],
        "float8[]": [0.1, -0.0, 1e-300, 1.7976931348623157e308, float("inf"), float("-inf"), None],
        "bigint[]": [0, -1, 2**62, None],
        "boolean[]": [True, False, None],
    }
    with engine.connect() as conn:
        for array_type, values in columns.items():
            literal = results._pg_literal(values, array_type)

            back = conn.exec_driver_sql(f"SELECT %s::{array_type}", (literal,)).scalar_one()

            assert back == values, array_type
        nan = conn.exec_driver_sql(
            "SELECT %s::float8[]", (results._pg_literal([float("nan")], "float8[]"),)
        ).scalar_one()
        assert nan[0] != nan[0]
