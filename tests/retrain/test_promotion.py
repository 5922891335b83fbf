"""After a retrain produced a version: a candidate that beats production goes to a canary of the
fleet; one that does not is stopped by the gate and never reaches a node."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine

from monitor.config import Settings
from monitor.demo_model import MODEL_NAME
from monitor.errors import Conflict
from monitor.retrain.promotion import canary_members, consider
from monitor.retrain.trainer import retrain
from monitor.storage import nodes, registry, retrains
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow
from tests.retrain.retraindata import (
    drifted_fleet,
    new_run,
    produced_run,
    quick_plan,
    quiet,
    register_worse_candidate,
    version_names,
)

SETTINGS = Settings(retrain_promotion_margin=0.02, retrain_canary_share=0.25)


def test_a_candidate_that_beats_production_goes_to_a_canary(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    model_id, plans, served = drifted_fleet(engine)
    served.close()
    run_id = new_run(engine, model_id)
    version = retrain(engine, MODEL_NAME, run_id=run_id, say=quiet, plan=quick_plan())
    with begin_write(engine) as conn:
        retrains.set_run(conn, run_id, status="produced", now=utcnow(), version=version)

    with caplog.at_level(logging.INFO, logger="monitor.retrain.promotion"):
        status = consider(engine, run_id, SETTINGS)

    assert status == "canary"
    with engine.connect() as conn:
        run = retrains.get_run(conn, run_id)
        deployment = registry.deployment(conn, model_id)
        assigned = {
            p.name: registry.assignment_for(
                conn, model_id, MODEL_NAME, nodes.get_node(conn, p.name)
            )
            for p in plans
        }
    assert run.status == "canary"
    assert run.details["gate"]["passed"] is True
    assert run.details["gate"]["candidate_accuracy"] >= (
        run.details["gate"]["production_accuracy"] + 0.02
    )
    canary = run.details["canary"]
    assert deployment.canary is not None and deployment.canary.version == version
    assert deployment.production is not None and deployment.production.version == "1"
    in_canary = sorted(n for n, a in assigned.items() if a is not None and a.reason == "canary")
    assert canary["nodes"] == in_canary and 0 < len(in_canary) < len(plans)
    assert canary["share"] == pytest.approx(deployment.canary_share)
    assert canary["windows"] == SETTINGS.retrain_canary_windows
    assert "started_at" in canary
    assert [r.message for r in caplog.records if "passed the gate" in r.message]


def test_a_deliberately_worse_candidate_is_gated_and_never_reaches_a_node(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    model_id, _, served = drifted_fleet(engine, windows=2, per_node=150)
    served.close()
    worse = register_worse_candidate(engine)
    run_id = produced_run(engine, model_id, worse)

    with caplog.at_level(logging.INFO, logger="monitor.retrain.promotion"):
        status = consider(engine, run_id, SETTINGS)

    assert status == "gated"
    with engine.connect() as conn:
        run = retrains.get_run(conn, run_id)
        deployment = registry.deployment(conn, model_id)
        history = registry.rollout_history(conn, model_id)
    assert run.status == "gated" and "canary" not in run.details
    assert run.details["gate"]["passed"] is False
    assert run.details["gate"]["candidate_accuracy"] < run.details["gate"]["production_accuracy"]
    assert deployment.canary is None
    assert "canary" not in [event["action"] for event in history]
    assert version_names(engine, model_id) == {"1": "production", "2": "archived"}
    assert [r.message for r in caplog.records if "stopped by the gate" in r.message]


def test_only_a_produced_run_is_considered(engine: Engine) -> None:
    model_id, _, served = drifted_fleet(engine, windows=1, per_node=10)
    served.close()
    run_id = new_run(engine, model_id)

    with pytest.raises(Conflict, match="not a produced version"):
        consider(engine, run_id, SETTINGS)


def test_a_share_that_reaches_no_node_is_raised_to_reach_one(engine: Engine) -> None:
    model_id, plans, served = drifted_fleet(engine, windows=1, per_node=10, nodes=3)
    served.close()

    with engine.connect() as conn:
        share, members = canary_members(conn, model_id, MODEL_NAME, 1e-9)

    assert len(members) == 1
    first = min(plans, key=lambda p: registry.canary_bucket(MODEL_NAME, p.name))
    assert members == [first.name]
    assert registry.canary_bucket(MODEL_NAME, first.name) < share
    assert all(registry.canary_bucket(MODEL_NAME, p.name) >= share for p in plans if p is not first)
