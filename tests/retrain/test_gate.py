"""The promotion gate: a candidate passes only when it beats production by the margin on
recent labelled records it was not trained on, both run through the runtime."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from monitor.demo_model import MODEL_NAME
from monitor.retrain import gate
from monitor.retrain.trainer import retrain
from tests.retrain.retraindata import (
    drifted_fleet,
    new_run,
    quick_plan,
    quiet,
    register_worse_candidate,
)

QUICK = quick_plan()


def test_a_candidate_retrained_after_concept_drift_passes_the_gate(engine: Engine) -> None:
    model_id, _, served = drifted_fleet(engine)
    served.close()
    version = retrain(engine, MODEL_NAME, run_id=new_run(engine, model_id), say=quiet, plan=QUICK)

    verdict = gate.evaluate(engine, MODEL_NAME, version, margin=0.02)

    assert verdict.passed, verdict
    assert verdict.production == "1" and verdict.candidate == version
    assert verdict.candidate_accuracy is not None and verdict.production_accuracy is not None
    assert verdict.candidate_accuracy >= verdict.production_accuracy + 0.02
    assert verdict.rows >= gate.MIN_HELD_OUT and verdict.skipped == 0


def test_a_margin_the_candidate_does_not_reach_fails_it(engine: Engine) -> None:
    model_id, _, served = drifted_fleet(engine, windows=3, per_node=150)
    served.close()
    version = retrain(engine, MODEL_NAME, run_id=new_run(engine, model_id), say=quiet, plan=QUICK)
    passed = gate.evaluate(engine, MODEL_NAME, version, margin=0.0)
    assert passed.candidate_accuracy is not None and passed.production_accuracy is not None
    beyond = passed.candidate_accuracy - passed.production_accuracy + 0.01

    verdict = gate.evaluate(engine, MODEL_NAME, version, margin=beyond)

    assert not verdict.passed
    assert "does not beat it by the margin" in verdict.reason
    assert verdict.candidate_accuracy == passed.candidate_accuracy


def test_a_deliberately_worse_candidate_fails_the_gate(engine: Engine) -> None:
    _, _, served = drifted_fleet(engine, windows=2, per_node=150)
    served.close()
    worse = register_worse_candidate(engine)

    verdict = gate.evaluate(engine, MODEL_NAME, worse, margin=0.02)

    assert not verdict.passed
    assert verdict.candidate_accuracy is not None and verdict.production_accuracy is not None
    assert verdict.candidate_accuracy < 0.3 < verdict.production_accuracy
    # Without a held-out slice of its own, the gate takes the newest labelled records.
    assert verdict.rows == 2 * 8 * 150


def test_too_few_held_out_records_fail_the_gate_with_the_reason(engine: Engine) -> None:
    _, _, served = drifted_fleet(engine, windows=1, per_node=10)
    served.close()
    worse = register_worse_candidate(engine)

    verdict = gate.evaluate(engine, MODEL_NAME, worse, margin=0.0)

    assert not verdict.passed
    assert verdict.reason == f"80 held-out labelled records, fewer than {gate.MIN_HELD_OUT}"


@pytest.mark.parametrize(("predicted", "accuracy"), [(["a", "b"], 0.5), (["b", "b"], 1.0)])
def test_accuracy_is_the_share_of_predictions_equal_to_the_label(
    predicted: list[str], accuracy: float
) -> None:
    assert gate.accuracy_of(predicted, ["b", "b"]) == accuracy
