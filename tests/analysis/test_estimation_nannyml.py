"""Estimated performance per scope equals NannyML's CBPE per chunk, on NannyML's own datasets.

Each 5,000-row chunk of the analysis data (6,000 for the multiclass data, as NannyML's docs
chunk it) is one scope of a kind "chunk", and every chunk is estimated in one call. Measured
differences from NannyML 0.13.1, every chunk:

- binary (car loan, reference 50,000 rows, analysis 50,000): accuracy, precision, recall and
  F1 within 1e-13, ROC AUC within 2e-9 (NannyML rounds its cumulative sums to 5 decimals);
  every sampling error within 1e-15.
- multiclass (credit cards, the first 15,000 reference rows, 18,000 analysis rows): accuracy,
  precision, recall and F1 within 1e-14, ROC AUC within 2e-6 (rows of equal score are taken in
  another order); every sampling error within 1e-15.

The tolerances asserted are the acceptance's 0.01 for accuracy and ROC AUC, and tight ones
for the rest, so that a regression shows long before it matters.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.analysis.estimation import FIGURES, EstimationResult, Estimator, estimate_performance
from monitor.analysis.policy import EstimationPolicy
from monitor.schema import OK

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
nml = pytest.importorskip("nannyml")

CAR_FEATURES = [
    "car_value",
    "salary_range",
    "debt_to_income_ratio",
    "loan_length",
    "repaid_loan_on_prev_car",
    "size_of_downpayment",
    "driver_tenure",
]
CARD_FEATURES = [
    "acq_channel",
    "app_behavioral_score",
    "requested_credit_limit",
    "app_channel",
    "credit_bureau_score",
    "stated_income",
    "is_customer",
]
CARDS = ["prepaid_card", "highstreet_card", "upmarket_card"]
POLICY = EstimationPolicy(band_errors=3.0)


def shaped(data: pd.DataFrame, features: list[str], proba: dict[str, str]) -> pd.DataFrame:
    """NannyML's frame in window shape: features, prediction, class probabilities."""
    frame = pd.DataFrame({f"feature:{name}": data[name] for name in features})
    frame["prediction"] = data["y_pred"]
    for cls, column in proba.items():
        frame[f"proba:{cls}"] = data[column]
    return frame


def quietly(call: Any, *args: Any) -> Any:
    """A NannyML call with its own deprecation notices silenced (they are not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args)


def nannyml_chunks(reference: pd.DataFrame, analysis: pd.DataFrame, **options: Any) -> Any:
    estimator = nml.CBPE(metrics=["roc_auc", "accuracy", "precision", "recall", "f1"], **options)
    quietly(estimator.fit, reference)
    return quietly(estimator.estimate, analysis).filter(period="analysis").to_df()


def ours(
    estimator: Estimator, analysis: pd.DataFrame, window: pd.DataFrame, chunk: int
) -> pd.DataFrame:
    window = window.assign(row_key=analysis["id"].to_numpy())
    result: EstimationResult = estimate_performance(
        estimator,
        window,
        {"chunk": np.arange(len(window)) // chunk},
        labels={},
        policy=POLICY,
    )
    frame = result.to_frame()
    return frame[frame.scope_kind == "chunk"].reset_index(drop=True)


def sampling_errors(estimator: Estimator, frame: pd.DataFrame, figure: str) -> np.ndarray:
    """A figure's sampling error from its band: three of its errors and three of the
    calibration's own either side, plus the shift allowance (NannyML's chunks here are far from
    the clip at 0 and 1)."""
    widening = (frame[f"{figure}_upper"] - frame[figure] - frame["shift_allowance"]).to_numpy()
    return widening / 3 - estimator.reference_error(figure)


@pytest.fixture(scope="module")
def car_loan() -> tuple[Estimator, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    reference, analysis, targets = quietly(nml.load_synthetic_car_loan_dataset)
    proba = {"1": "y_pred_proba"}
    fitted = Estimator.fit(
        shaped(reference, CAR_FEATURES, proba).assign(label=reference["repaid"]),
        task="classification",
        classes=[0, 1],
        positive_class=1,
    )
    estimated = ours(fitted, analysis, shaped(analysis, CAR_FEATURES, proba), 5_000)
    theirs = nannyml_chunks(
        reference,
        analysis,
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="repaid",
        problem_type="classification_binary",
        chunk_size=5_000,
    )
    realised = analysis.merge(targets, on="id")
    return fitted, estimated, theirs, realised


def test_binary_estimates_equal_nannyml_per_chunk(car_loan) -> None:
    fitted, estimated, theirs, _ = car_loan
    assert len(estimated) == len(theirs) == 10
    assert (estimated.status == OK).all()
    assert (estimated.n_scored == 5_000).all()
    for figure in ("accuracy", "roc_auc"):
        assert np.abs(estimated[figure] - theirs[(figure, "value")]).max() < 0.01
    for figure in ("accuracy", "precision", "recall", "f1"):
        np.testing.assert_allclose(estimated[figure], theirs[(figure, "value")], atol=1e-12)
    np.testing.assert_allclose(estimated["roc_auc"], theirs[("roc_auc", "value")], atol=1e-6)
    for figure in FIGURES:
        np.testing.assert_allclose(
            sampling_errors(fitted, estimated, figure),
            theirs[(figure, "sampling_error")],
            atol=1e-12,
        )
    np.testing.assert_allclose(
        estimated["sampling_error"], theirs[("accuracy", "sampling_error")], atol=1e-15
    )


def test_binary_estimate_tracks_the_realised_accuracy(car_loan) -> None:
    """The chunks NannyML's docs show degrading are estimated to degrade, and the realised
    accuracy (the analysis targets joined by id) lies within each chunk's band."""
    _, estimated, _, realised = car_loan
    correct = (realised["y_pred"] == realised["repaid"]).to_numpy()
    per_chunk = correct.reshape(10, 5_000).mean(axis=1)
    assert estimated["accuracy"][:5].min() > estimated["accuracy"][5:].max()
    inside = (estimated["accuracy_lower"] <= per_chunk) & (per_chunk <= estimated["accuracy_upper"])
    assert inside.mean() >= 0.9


def test_multiclass_estimates_equal_nannyml_per_chunk() -> None:
    reference, analysis, _ = quietly(nml.load_synthetic_multiclass_classification_dataset)
    reference, analysis = reference.iloc[:15_000], analysis.iloc[:18_000]
    proba = {c: f"y_pred_proba_{c}" for c in CARDS}
    fitted = Estimator.fit(
        shaped(reference, CARD_FEATURES, proba).assign(label=reference["y_true"]),
        task="classification",
        classes=None,
        positive_class=None,
    )
    assert fitted.status == OK and len(fitted.calibrators) == 3
    estimated = ours(fitted, analysis, shaped(analysis, CARD_FEATURES, proba), 6_000)
    theirs = nannyml_chunks(
        reference,
        analysis,
        y_pred_proba=proba,
        y_pred="y_pred",
        y_true="y_true",
        problem_type="classification_multiclass",
        chunk_size=6_000,
    )
    assert len(estimated) == len(theirs) == 3
    for figure in ("accuracy", "precision", "recall", "f1"):
        np.testing.assert_allclose(estimated[figure], theirs[(figure, "value")], atol=1e-12)
    np.testing.assert_allclose(estimated["roc_auc"], theirs[("roc_auc", "value")], atol=1e-4)
    for figure in FIGURES:
        np.testing.assert_allclose(
            sampling_errors(fitted, estimated, figure),
            theirs[(figure, "sampling_error")],
            atol=1e-12,
        )
