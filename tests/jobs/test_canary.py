"""The canary job: a canary whose nodes do as well as the rest is rolled out to every node, one
whose nodes' accuracy regresses is rolled back automatically, and nothing is decided before
the canary has run its windows."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.demo_model import MODEL_NAME
from monitor.fleet.scenarios import NodePlan
from monitor.jobs.analysis import Worker
from monitor.jobs.canary import judge_canaries
from monitor.retrain.canary import NodeWindow, judge
from monitor.retrain.promotion import canary_members, consider
from monitor.retrain.trainer import retrain
from monitor.storage import nodes, registry, retrains
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow
from tests.jobs.test_analysis import CONFIG
from tests.retrain.retraindata import (
    T0,
    WINDOW,
    Served,
    drifted_fleet,
    new_run,
    produced_run,
    quick_plan,
    quiet,
    register_worse_candidate,
    store_window,
    version_names,
)

SETTINGS = Settings(retrain_canary_share=0.25, retrain_canary_windows=3)
#: The canary starts after the fleet's first four windows (one steady, three drifted).
STARTED = T0 + 4 * WINDOW


def after(windows: int) -> datetime:
    """Once the window number ``windows - 1`` is closed and past its grace."""
    return T0 + windows * WINDOW + timedelta(minutes=2)


def run_windows(
    engine: Engine, model_id: int, plans: list[NodePlan], served: Served, first: int, last: int
) -> None:
    """Store windows ``first..last`` (failures in the new mode), each node served by the version
    it is assigned, and analyse every window closed by then."""
    for index in range(first, last + 1):
        store_window(engine, model_id, plans, index, 250, concept=1.0, served=served)
    Worker(engine, CONFIG).run_due(now=after(last + 1))


def assignments(engine: Engine, model_id: int, plans: list[NodePlan]) -> dict[str, str]:
    """Each node's assigned version, by node name."""
    with engine.connect() as conn:
        out = {}
        for plan in plans:
            node = nodes.get_node(conn, plan.name)
            assigned = registry.assignment_for(conn, model_id, MODEL_NAME, node)
            assert assigned is not None
            out[plan.name] = assigned.version.version
    return out


def run_of(engine: Engine, run_id: int) -> retrains.Run:
    with engine.connect() as conn:
        return retrains.get_run(conn, run_id)


def test_a_good_canary_is_rolled_out_to_every_node(engine: Engine) -> None:
    model_id, plans, served = drifted_fleet(engine)
    run_id = new_run(engine, model_id)
    version = retrain(engine, MODEL_NAME, run_id=run_id, say=quiet, plan=quick_plan())
    with begin_write(engine) as conn:
        retrains.set_run(conn, run_id, status="produced", now=utcnow(), version=version)
    assert consider(engine, run_id, SETTINGS, now=STARTED) == "canary"
    canary_nodes = run_of(engine, run_id).details["canary"]["nodes"]
    assert {n for n, v in assignments(engine, model_id, plans).items() if v == version} == set(
        canary_nodes
    )

    # The window the canary started in is skipped, then three windows are judged.
    run_windows(engine, model_id, plans, served, 4, 6)
    assert judge_canaries(engine, SETTINGS, now=after(7)) == 0
    assert run_of(engine, run_id).status == "canary"
    run_windows(engine, model_id, plans, served, 7, 7)
    decided = judge_canaries(engine, SETTINGS, now=after(8))
    served.close()

    assert decided == 1
    run = run_of(engine, run_id)
    assert run.status == "promoted"
    judgement = run.details["canary"]["judgement"]
    assert judgement["decision"] == "promote" and judgement["windows"] == 3
    assert judgement["canary"]["nodes"] == len(canary_nodes)
    assert judgement["rest"]["nodes"] == len(plans) - len(canary_nodes)
    assert judgement["canary"]["accuracy"] > judgement["rest"]["accuracy"]
    assert set(assignments(engine, model_id, plans).values()) == {version}
    assert version_names(engine, model_id) == {"1": "archived", version: "production"}
    assert judge_canaries(engine, SETTINGS, now=after(8)) == 0  # decided once


def test_a_canary_whose_accuracy_regresses_is_rolled_back_automatically(engine: Engine) -> None:
    model_id, plans, served = drifted_fleet(engine)
    worse = register_worse_candidate(engine)
    run_id = produced_run(engine, model_id, worse)
    start_canary_past_the_gate(engine, model_id, run_id, worse)
    assert set(assignments(engine, model_id, plans).values()) == {"1", worse}

    run_windows(engine, model_id, plans, served, 4, 7)
    decided = judge_canaries(engine, SETTINGS, now=after(8))
    served.close()

    assert decided == 1
    run = run_of(engine, run_id)
    assert run.status == "rolled_back"
    judgement = run.details["canary"]["judgement"]
    assert judgement["decision"] == "rollback"
    assert "accuracy regresses" in judgement["reason"]
    assert judgement["canary"]["accuracy"] < 0.3 < judgement["rest"]["accuracy"]
    assert set(assignments(engine, model_id, plans).values()) == {"1"}
    with engine.connect() as conn:
        assert registry.deployment(conn, model_id).canary is None
    assert version_names(engine, model_id) == {"1": "production", worse: "archived"}


def test_a_canary_ended_by_hand_is_recorded_as_it_ended(engine: Engine) -> None:
    model_id, _, served = drifted_fleet(engine, windows=1, per_node=10)
    served.close()
    worse = register_worse_candidate(engine)
    run_id = produced_run(engine, model_id, worse)
    start_canary_past_the_gate(engine, model_id, run_id, worse)
    with begin_write(engine) as conn:
        registry.stop_canary(conn, model_id)

    assert judge_canaries(engine, SETTINGS, now=after(2)) == 1

    run = run_of(engine, run_id)
    assert run.status == "rolled_back" and run.details["canary"]["ended_by_hand"] is True


def start_canary_past_the_gate(engine: Engine, model_id: int, run_id: int, version: str) -> None:
    """What ``consider`` does when the gate passes, for a candidate the gate would stop."""
    with begin_write(engine) as conn:
        share, members = canary_members(conn, model_id, MODEL_NAME, SETTINGS.retrain_canary_share)
        registry.start_canary(conn, model_id, version, share)
        canary = {"started_at": STARTED.isoformat(), "share": share, "nodes": members}
        retrains.set_run(conn, run_id, status="canary", now=utcnow(), details={"canary": canary})


def observed(canary: bool, accuracy: float | None, n: int) -> list[NodeWindow]:
    return [NodeWindow(f"{canary}-{i}", canary, n, accuracy, False) for i in range(3)]


def test_a_small_accuracy_gap_within_the_noise_is_no_regression() -> None:
    seen = observed(True, 0.86, 60) + observed(False, 0.90, 200)

    judgement = judge(seen, windows=3, wanted=3)

    assert judgement.decision == "promote", judgement.reason


def test_too_few_labels_wait_then_roll_back() -> None:
    seen = observed(True, 0.95, 5) + observed(False, 0.90, 200)

    assert judge(seen, windows=3, wanted=3).decision == "wait"
    late = judge(seen, windows=6, wanted=3)
    assert late.decision == "rollback" and "too few" in late.reason


def test_a_canary_that_drifts_more_than_the_rest_is_rolled_back() -> None:
    seen = [NodeWindow(f"c{i}", True, 100, 0.9, True) for i in range(12)]
    seen += [NodeWindow(f"r{i}", False, 100, 0.9, False) for i in range(36)]

    judgement = judge(seen, windows=3, wanted=3)

    assert judgement.decision == "rollback" and "drifts more" in judgement.reason
    assert judgement.canary.drift_share == 1.0 and judgement.rest.drift_share == 0.0


def test_nothing_is_decided_before_the_windows_are_in() -> None:
    seen = observed(True, 0.1, 500) + observed(False, 0.9, 500)

    assert judge(seen, windows=2, wanted=3).decision == "wait"
