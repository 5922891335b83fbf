"""The demo model: the runtime agrees with scikit-learn, int8 with fp32, builds are
deterministic, and the shipped files are what the builder makes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from monitor.cli import main
from monitor.demo_model import DemoFiles, files_in, paths
from monitor.demo_model.build import REFERENCE_ROWS, BuildReport, build
from monitor.fleet.machines import FAILURE_RATE_BAND, MachineFleetGenerator
from monitor.runtime import EdgeRuntime, ModelCard
from monitor.runtime.preprocess import Preprocessor

SEED = 42


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    return build(tmp_path_factory.mktemp("demo-a"), seed=SEED)


@pytest.fixture(scope="module")
def held_out() -> list[dict[str, Any]]:
    """Readings the model never saw (another seed than the build's)."""
    return MachineFleetGenerator(SEED + 1000).readings(3_000).rows()


def test_the_runtime_matches_the_scikit_learn_pipeline(
    built: BuildReport, held_out: list[dict[str, Any]]
) -> None:
    card = ModelCard.load(built.files.card)
    expected = built.pipeline.predict_proba(Preprocessor(card).matrix(held_out))
    runtime = EdgeRuntime(built.files.model)
    got = runtime.predict_batch(held_out)
    probs = np.array([[p.probabilities[c] for c in card.classes] for p in got])
    assert np.abs(probs - expected).max() < 1e-4
    fail = card.classes.index("fail")
    labels = np.where(expected[:, fail] >= card.threshold, "fail", "ok")
    assert [p.label for p in got] == labels.tolist()
    # One at a time is the same as in a batch.
    for row, p in zip(held_out[:200], got[:200], strict=True):
        assert runtime.predict(row).probabilities == pytest.approx(p.probabilities, abs=1e-6)


def test_int8_agrees_with_fp32_on_held_out_data(
    built: BuildReport, held_out: list[dict[str, Any]]
) -> None:
    fp32 = EdgeRuntime(built.files.model)
    int8 = EdgeRuntime(built.files.model_int8, built.files.card)
    a, b = fp32.predict_batch(held_out), int8.predict_batch(held_out)
    agreement = np.mean([x.label == y.label for x, y in zip(a, b, strict=True)])
    assert agreement >= 0.98
    assert built.agreement >= 0.98
    assert built.files.model_int8.stat().st_size < built.files.model.stat().st_size


def test_the_report_compares_fp32_and_int8(built: BuildReport) -> None:
    text = "\n".join(built.lines())
    for needle in ("file size", "latency, batch 1", "accuracy", "f1", "roc_auc", "int8 vs fp32"):
        assert needle in text
    for kind in ("fp32", "int8"):
        assert built.metrics[kind]["roc_auc"] > 0.9
        assert built.metrics[kind]["f1"] > 0.6
        assert built.latency_us[kind] > 0
    assert FAILURE_RATE_BAND[0] <= built.positive_rate <= FAILURE_RATE_BAND[1]
    card = ModelCard.load(built.files.card)
    assert card.metrics["roc_auc"] == built.metrics["fp32"]["roc_auc"]
    assert card.threshold == built.threshold


def test_the_reference_dataset(built: BuildReport) -> None:
    card = ModelCard.load(built.files.card)
    table = pq.read_table(built.files.reference)
    assert table.num_rows == REFERENCE_ROWS
    assert table.column_names == [
        *card.feature_names,
        "prediction",
        "probability_fail",
        "probability_ok",
        "label",
    ]
    data = table.to_pydict()
    p_fail = np.array(data["probability_fail"])
    assert np.allclose(p_fail + np.array(data["probability_ok"]), 1.0, atol=1e-5)
    assert data["prediction"] == np.where(p_fail >= card.threshold, "fail", "ok").tolist()
    rate = np.mean(np.array(data["label"]) == "fail")
    assert FAILURE_RATE_BAND[0] <= rate <= FAILURE_RATE_BAND[1]


@pytest.mark.slow
def test_the_same_seed_builds_the_same_files_and_the_cli_prints_the_report(
    built: BuildReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo-b"
    assert main(["models", "build-demo", "--out", str(out), "--seed", str(SEED)]) == 0
    printed = capsys.readouterr().out
    assert "int8 vs fp32: same label on" in printed
    again = files_in(out)
    for name in ("model", "model_int8", "card", "reference"):
        first, second = getattr(built.files, name), getattr(again, name)
        assert sha(first) == sha(second), name
        assert sha(second) in printed


def test_the_shipped_files_are_the_builders(built: BuildReport) -> None:
    shipped: DemoFiles = paths()
    sizes = [p.stat().st_size for p in vars(shipped).values()]
    assert sum(sizes) < 1024 * 1024
    ours, fresh = ModelCard.load(shipped.card), ModelCard.load(built.files.card)
    assert (ours.features, ours.columns, ours.classes) == (
        fresh.features,
        fresh.columns,
        fresh.classes,
    )
    # Byte equality holds where the build ran (same BLAS); elsewhere the models must agree.
    rows = MachineFleetGenerator(7).readings(2_000).rows()
    a = EdgeRuntime(shipped.model).predict_batch(rows)
    b = EdgeRuntime(built.files.model).predict_batch(rows)
    assert np.mean([x.label == y.label for x, y in zip(a, b, strict=True)]) >= 0.99
