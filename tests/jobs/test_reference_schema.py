"""The worker analyses a window against the reference of a version registered by its reference
data alone, with the kinds of the version's schema: an integer code declared categorical is
compared category by category, even though nodes send it as a number."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from monitor.analysis import ReferenceProfile, analyse_drift, analyse_quality
from monitor.commands import models
from monitor.commands.datasets import SchemaChoice, infer_schema
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.reference import drift_spec, window_shaped
from monitor.schema import NO_REFERENCE
from monitor.storage import models as stored_models
from monitor.storage import nodes, results
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels
from monitor.storage.records import insert_batch, prepare_batch

MODEL = "press-line"
WINDOW = timedelta(minutes=15)
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
CONFIG = AnalysisConfig(window=WINDOW, grace=timedelta(minutes=1), lookback=timedelta(days=30))
NOW = T0 + timedelta(days=1)
#: Error codes 0..29: more than any inference calls a code, so the schema must say so.
CODES = 30


def reference_frame(rows: int = 900, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "machine": rng.choice(["pump", "fan", "press"], rows),
            "error_code": rng.integers(0, CODES, rows),
            "temp": rng.normal(70.0, 2.0, rows),
            "prediction": rng.choice(["fail", "ok"], rows),
            "label": rng.choice(["fail", "ok"], rows),
        }
    )


def as_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def store_window(
    engine: Engine, model_id: int, start: datetime, *, codes: np.ndarray, seed: int
) -> list[str]:
    """300 records per node of two nodes in ``[start, start + WINDOW)``, the error code sent
    as a float (as a node's JSON number arrives); returns the request ids."""
    rng = np.random.default_rng(seed)
    ids = []
    with begin_write(engine) as conn:
        # The version is first seen in traffic: nodes report it before it is registered.
        version_id = stored_models.version_id(conn, model_id, "1")
        for name in ("node-a", "node-b"):
            node = nodes.get_node(conn, name)
            records = []
            for i in range(300):
                uid = uuid.uuid4().hex
                ids.append(uid)
                records.append(
                    {
                        "id": uid,
                        "request_id": uid,
                        "ts": (start + WINDOW * (i / 300)).timestamp(),
                        "features": {
                            "machine": str(rng.choice(["pump", "fan", "press"])),
                            "error_code": float(rng.choice(codes)),
                            "temp": float(rng.normal(70.0, 2.0)),
                        },
                        "prediction": str(rng.choice(["fail", "ok"])),
                    }
                )
            insert_batch(
                conn,
                node_id=node.id,
                model_id=model_id,
                model_version_id=version_id,
                batch_uid=None,
                batch=prepare_batch(records),
            )
    return ids


def setup(engine: Engine) -> int:
    model_id = models.add_model(engine, MODEL).id
    with begin_write(engine) as conn:
        nodes.add_node(conn, "node-a", site="site-a")
        nodes.add_node(conn, "node-b", site="site-b")
    return model_id


def fleet_features(engine: Engine, model_id: int, start: datetime) -> dict[str, object]:
    with engine.connect() as conn:
        stored = results.window(conn, model_id, start)
    assert stored is not None
    fleet = stored.drift_of()
    return {"status": fleet.result.status, "features": stored.drift_features.get(fleet.id, [])}


def test_a_window_is_judged_against_a_reference_only_version_with_the_schema_s_kinds(
    engine: Engine,
) -> None:
    model_id = setup(engine)
    worker = Worker(engine, CONFIG)
    # Window 0 is analysed before the reference exists; window 1 after: the worker notices the
    # version got its reference.
    store_window(engine, model_id, T0, codes=np.arange(CODES), seed=2)
    worker.run_due(now=T0 + WINDOW + timedelta(minutes=2))
    ids = store_window(engine, model_id, T0 + WINDOW, codes=np.array([0, 1, 2]), seed=3)
    models.register_reference(
        engine,
        MODEL,
        "1",
        as_parquet(reference_frame()),
        SchemaChoice(categorical=("error_code",)),
    )
    with begin_write(engine) as conn:
        upsert_labels(
            conn,
            model_id=model_id,
            node_id=None,
            rows=[{"request_id": r, "label": "ok"} for r in ids],
        )

    assert worker.run_due(now=NOW) == 1

    before = fleet_features(engine, model_id, T0)
    assert before["status"] == NO_REFERENCE
    after = fleet_features(engine, model_id, T0 + WINDOW)
    assert after["status"] != NO_REFERENCE
    by_name = {f.feature: f for f in after["features"]}  # type: ignore[attr-defined]
    assert by_name["error_code"].column_kind == "categorical"
    assert by_name["error_code"].drifted is True
    assert by_name["temp"].column_kind == "numerical"
    assert by_name["temp"].drifted is False
    assert by_name["machine"].column_kind == "categorical"
    assert by_name["prediction"].column_kind == "categorical"
    # Performance reads the task from the schema: every label is "ok".
    with engine.connect() as conn:
        window = results.window(conn, model_id, T0 + WINDOW)
    assert window is not None
    performance = window.performance_of().result
    assert performance.n_labelled == 600  # type: ignore[attr-defined]


def test_a_numeric_window_column_declared_categorical_is_read_as_categories() -> None:
    reference = reference_frame()
    inferred = infer_schema(reference, SchemaChoice(categorical=("error_code",)))
    shaped = window_shaped(reference, inferred.schema)
    profile = ReferenceProfile.build(shaped, drift_spec(shaped, inferred.schema))
    rng = np.random.default_rng(4)
    # The same distribution as the reference, sent as floats: no drift, no type mismatch.
    window = pd.DataFrame(
        {
            "feature:machine": pd.Categorical(rng.choice(["pump", "fan", "press"], 800)),
            "feature:error_code": rng.integers(0, CODES, 800).astype(np.float64),
            "feature:temp": rng.normal(70.0, 2.0, 800),
            "prediction": pd.Categorical(rng.choice(["fail", "ok"], 800)),
            "node_id": np.ones(800, np.int64),
        }
    )

    drift = analyse_drift(profile, window)
    quality = analyse_quality(profile, window)

    row = drift.feature_row("error_code")
    assert (row.column_kind, row.drifted) == ("categorical", False)
    assert row.method == "chisquare"
    assert quality.schema == ()
    assert quality.feature_row("error_code").n_new_categories == 0
