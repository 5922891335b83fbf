"""The reference retrainer: trained on recent labelled records after a concept drift, its
candidate beats production on records it never saw, and it is registered with its training data
as its reference."""

from __future__ import annotations

import io
import json
import math
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.commands import models as model_commands
from monitor.demo_model import MODEL_NAME, paths
from monitor.errors import Conflict
from monitor.retrain import gate
from monitor.retrain.trainer import retrain
from monitor.storage import registry, retrains
from monitor.storage.labelled import LABEL, NODE, labelled_records
from tests.retrain import retraindata
from tests.retrain.retraindata import (
    T0,
    WINDOW,
    Served,
    new_run,
    quick_plan,
    quiet,
    register_demo_model,
    register_fleet,
    store_window,
    version_names,
)

#: Small and quick: the recipe's network, fewer optimiser steps.
QUICK = quick_plan()


def drifted_fleet(engine: Engine, *, windows: int = 4, per_node: int = 250) -> int:
    model_id, _, served = retraindata.drifted_fleet(engine, windows=windows, per_node=per_node)
    served.close()
    return model_id


def test_a_model_retrained_after_concept_drift_beats_production_on_held_out_records(
    engine: Engine,
) -> None:
    model_id = drifted_fleet(engine)
    run_id = new_run(engine, model_id)
    said: list[str] = []

    version = retrain(engine, MODEL_NAME, run_id=run_id, say=said.append, plan=QUICK)

    assert version == "2"
    assert version_names(engine, model_id) == {"1": "production", "2": "candidate"}
    with engine.connect() as conn:
        candidate = registry.get_version(conn, model_id, "2")
        reference = pd.read_parquet(io.BytesIO(registry.reference(conn, candidate.id) or b""))
        run = retrains.get_run(conn, run_id)
    metrics = candidate.metrics or {}
    assert metrics["candidate_accuracy"] > metrics["production_accuracy"] + 0.02, metrics
    assert metrics["held_out_rows"] >= gate.MIN_HELD_OUT
    assert metrics["recipe"] == "demo-mlp" and metrics["retrained_from"] == "1"
    assert run.details["trained"]["candidate_accuracy"] == metrics["candidate_accuracy"]
    # Its reference is its training data: the recent records and some of production's.
    assert len(reference) == metrics["recent_rows"] + metrics["reference_rows"]
    assert 0 < metrics["reference_rows"] <= 0.25 * len(reference)
    assert set(reference[LABEL]) == {"fail", "ok"}
    assert {"prediction", "probability_fail", "probability_ok"} <= set(reference.columns)
    assert candidate.card is not None and candidate.card["version"] == "2"
    assert any("registered pump-failure 2" in line for line in said), said


def test_the_held_out_slice_is_among_the_newest_records_and_none_of_it_is_trained_on(
    engine: Engine,
) -> None:
    model_id = drifted_fleet(engine, windows=3, per_node=150)
    run_id = new_run(engine, model_id)
    version = retrain(engine, MODEL_NAME, run_id=run_id, say=quiet, plan=QUICK)

    with engine.connect() as conn:
        candidate = registry.get_version(conn, model_id, version)
        every = labelled_records(conn, model_id, T0, T0 + 3 * WINDOW)
        trained_on = pd.read_parquet(io.BytesIO(registry.reference(conn, candidate.id) or b""))
    metrics = candidate.metrics or {}
    held_out = gate.HeldOut.from_dict(metrics["held_out"])
    held = held_out.select(every[every["ts"] >= pd.Timestamp(held_out.start)])
    assert len(held) == metrics["held_out_rows"] >= gate.MIN_HELD_OUT
    # The newest 30% of the records, split by bucket: held-out rows are 40% of them.
    assert every["ts"].searchsorted(pd.Timestamp(held_out.start)) == len(every) - math.ceil(
        0.3 * len(every)
    )
    assert len(held) == pytest.approx(0.4 * 0.3 * len(every), rel=0.2)
    names = [f"feature:{n}" for n in ("rpm", "temperature_c", "vibration_mm_s")]
    seen = set(trained_on[["rpm", "temperature_c", "vibration_mm_s"]].itertuples(index=False))
    assert not seen & set(held[names].itertuples(index=False))


def test_a_card_that_names_no_recipe_cannot_be_retrained(engine: Engine) -> None:
    card = json.loads(paths().card.read_text())
    card["name"] = "vendor-model"
    model_commands.add_model(engine, "vendor-model")
    model_commands.register_version(
        engine, "vendor-model", artifact=paths().model.read_bytes(), card=card
    )
    model_commands.promote(engine, "vendor-model", "1")
    with engine.connect() as conn:
        from monitor.storage import models

        model_id = models.get_model(conn, "vendor-model").id

    with pytest.raises(Conflict, match="names no training recipe") as caught:
        retrain(engine, "vendor-model", run_id=new_run(engine, model_id), say=quiet)
    assert caught.value.code == "no_recipe"


def test_too_few_labelled_records_is_a_clear_error(engine: Engine) -> None:
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, 2)
    served = Served(engine, model_id)
    store_window(engine, model_id, plans, 0, 100, concept=1.0, served=served, labelled=0.5)

    with pytest.raises(Conflict, match="100 labelled records") as caught:
        retrain(engine, MODEL_NAME, run_id=new_run(engine, model_id), say=quiet)
    assert caught.value.code == "too_few_labels"


def test_labelled_records_are_the_labelled_ones_newest_kept_under_a_limit(engine: Engine) -> None:
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, 2)
    served = Served(engine, model_id)
    for index in range(2):
        store_window(engine, model_id, plans, index, 100, concept=0.0, served=served, labelled=0.3)

    with engine.connect() as conn:
        every = labelled_records(conn, model_id, T0, T0 + timedelta(days=1))
        newest = labelled_records(conn, model_id, T0, T0 + timedelta(days=1), limit=50)

    assert len(every) == 2 * 2 * 30
    assert set(every[LABEL]) <= {"fail", "ok"}
    assert set(every[NODE]) == {p.name for p in plans}
    assert set(every["model_version"]) == {"1"}
    assert every["ts"].is_monotonic_increasing
    assert len(newest) == 50
    assert newest["row_key"].tolist() == every["row_key"].tolist()[-50:]
