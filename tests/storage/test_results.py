"""Analysis results: runs and feature rows round-trip; a recomputation replaces its kind only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.storage import models, results
from monitor.storage.engine import begin_write
from monitor.storage.results import FeatureResult, Run

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=15)


def drift_runs() -> list[Run]:
    features = (
        FeatureResult("temperature", "wasserstein", 0.31, 0.1, None, True),
        FeatureResult("machine_type", "jensenshannon", 0.02, 0.1, None, False),
    )
    return [
        Run("drift", "fleet", "", "ok", 5_000, drifted=False, drift_share=0.5, features=features),
        Run("drift", "site", "plant-1", "ok", 2_000, drifted=True, drift_share=0.5),
        Run("drift", "node", "n-7", "insufficient_data", 12),
    ]


def test_runs_and_features_round_trip(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        ids = results.replace_runs(conn, model_id, ["drift"], START, END, drift_runs())
        results.save_snapshot(conn, ids[("drift", "fleet", "")], b'{"snapshot": 1}')

    with engine.connect() as conn:
        stored = results.find_runs(conn, model_id, "drift")
        features = results.features_of(conn, [r.id for r in stored])
        fleet_id = ids[("drift", "fleet", "")]
        assert results.snapshot(conn, fleet_id) == b'{"snapshot": 1}'

    assert [(r.scope_kind, r.scope_key, r.status, r.drifted) for r in stored] == [
        ("fleet", "", "ok", False),
        ("site", "plant-1", "ok", True),
        ("node", "n-7", "insufficient_data", None),
    ]
    assert stored[0].window_start == START and stored[0].window_end == END
    assert [f.feature for f in features[fleet_id]] == ["machine_type", "temperature"]
    assert features[fleet_id][1].statistic == 0.31


def test_a_recomputation_replaces_only_its_kind(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        results.replace_runs(conn, model_id, ["drift"], START, END, drift_runs())
        results.replace_runs(
            conn,
            model_id,
            ["performance"],
            START,
            END,
            [Run("performance", "fleet", "", "ok", 100, summary={"accuracy": 0.9})],
        )
        results.replace_runs(
            conn,
            model_id,
            ["performance"],
            START,
            END,
            [Run("performance", "fleet", "", "ok", 150, summary={"accuracy": 0.8})],
        )

    with engine.connect() as conn:
        performance = results.find_runs(conn, model_id, "performance")
        drift = results.find_runs(conn, model_id, "drift", scope_kind="fleet")

    assert [(r.n_rows, r.summary) for r in performance] == [(150, {"accuracy": 0.8})]
    assert len(drift) == 1
