"""Performance metrics per scope equal scikit-learn's on the same labelled records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from monitor.analysis import analyse_performance

ROWS = 30_000


def window_with_labels(classes: list[str], seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(ROWS, len(classes))) * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba = np.round(proba, 2)  # ties, as real scores have
    proba[:, -1] = 1.0 - proba[:, :-1].sum(axis=1)
    truth = np.array(
        [rng.choice(classes, p=np.clip(p, 0, 1) / np.clip(p, 0, 1).sum()) for p in proba]
    )
    node = rng.choice(12, ROWS, p=np.r_[np.full(11, 0.09), 0.01])
    frame = pd.DataFrame(
        {
            "row_key": np.arange(ROWS, dtype=np.int64) + 1_000,
            "node_id": node,
            "prediction": pd.Categorical(np.array(classes)[proba.argmax(axis=1)]),
            **{f"proba:{c}": proba[:, i] for i, c in enumerate(classes)},
        }
    )
    labelled = rng.random(ROWS) < 0.4
    labels = pd.Series(truth[labelled], index=frame["row_key"][labelled].to_numpy())
    return frame, labels


def labelled_rows(frame: pd.DataFrame, labels: pd.Series, node: int | None = None):
    keep = frame["row_key"].isin(labels.index)
    if node is not None:
        keep &= frame["node_id"] == node
    rows = frame[keep]
    return labels.loc[rows["row_key"]].to_numpy(), rows["prediction"].astype(str).to_numpy(), rows


@pytest.mark.parametrize("node", [None, 3])
def test_binary_metrics_equal_sklearn(node: int | None) -> None:
    frame, labels = window_with_labels(["no", "yes"], seed=1)
    result = analyse_performance(frame, labels, "classification", positive_class="yes")
    row = result.row() if node is None else result.row("node", str(node))
    y_true, y_pred, rows = labelled_rows(frame, labels, node)
    assert row.n_labelled == len(y_true)
    assert row.label_coverage == pytest.approx(len(y_true) / row.n_rows)
    assert row.accuracy == pytest.approx(metrics.accuracy_score(y_true, y_pred), abs=1e-12)
    assert row.precision == pytest.approx(
        metrics.precision_score(y_true, y_pred, pos_label="yes"), abs=1e-12
    )
    assert row.recall == pytest.approx(
        metrics.recall_score(y_true, y_pred, pos_label="yes"), abs=1e-12
    )
    assert row.f1 == pytest.approx(metrics.f1_score(y_true, y_pred, pos_label="yes"), abs=1e-12)
    assert row.roc_auc == pytest.approx(
        metrics.roc_auc_score(y_true == "yes", rows["proba:yes"]), abs=1e-12
    )
    assert result.average == "binary"


def test_multiclass_macro_metrics_equal_sklearn() -> None:
    classes = ["bearing", "ok", "seal", "valve"]
    frame, labels = window_with_labels(classes, seed=2)
    result = analyse_performance(frame, labels, "classification", classes=classes)
    for node in (None, 5):
        row = result.row() if node is None else result.row("node", str(node))
        y_true, y_pred, rows = labelled_rows(frame, labels, node)
        assert row.accuracy == pytest.approx(metrics.accuracy_score(y_true, y_pred), abs=1e-12)
        for name, score in (
            ("precision", metrics.precision_score),
            ("recall", metrics.recall_score),
            ("f1", metrics.f1_score),
        ):
            expected = score(y_true, y_pred, average="macro", zero_division=0)
            assert getattr(row, name) == pytest.approx(expected, abs=1e-12), name
        scores = rows[[f"proba:{c}" for c in classes]].to_numpy()
        expected_auc = metrics.roc_auc_score(y_true, scores, multi_class="ovr", labels=classes)
        assert row.roc_auc == pytest.approx(expected_auc, abs=1e-12)
    assert result.average == "macro"


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(50, 10, ROWS)
    frame = pd.DataFrame(
        {
            "row_key": np.arange(ROWS),
            "node_id": rng.integers(0, 5, ROWS),
            "prediction": truth + rng.normal(0, 3, ROWS),
        }
    )
    labels = pd.Series(truth, index=frame["row_key"])[rng.random(ROWS) < 0.5]
    result = analyse_performance(frame, labels.to_dict(), "regression")
    row = result.row("node", "2")
    keep = frame["row_key"].isin(labels.index) & (frame["node_id"] == 2)
    y_true, y_pred = labels.loc[frame["row_key"][keep]].to_numpy(), frame["prediction"][keep]
    assert row.mae == pytest.approx(metrics.mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert row.rmse == pytest.approx(metrics.root_mean_squared_error(y_true, y_pred), rel=1e-12)
    assert row.accuracy is None and row.roc_auc is None


def test_scopes_below_the_minimum_of_labels_get_no_metrics() -> None:
    frame, labels = window_with_labels(["no", "yes"], seed=4)
    result = analyse_performance(
        frame, labels, "classification", positive_class="yes", min_labels=200
    )
    small = result.row("node", "11")  # about 120 labelled records
    assert 0 < small.n_labelled < 200
    assert small.status == "insufficient_labels" and small.f1 is None and small.accuracy is None
    assert small.label_coverage == pytest.approx(small.n_labelled / small.n_rows)
    assert result.row().status == "ok"
    unlabelled = analyse_performance(frame, {}, "classification", positive_class="yes")
    assert unlabelled.row().n_labelled == 0 and unlabelled.row().label_coverage == 0.0


def test_numeric_labels_and_predictions_meet_as_text() -> None:
    frame = pd.DataFrame(
        {
            "row_key": [1, 2, 3, 4],
            "node_id": [1, 1, 1, 1],
            "prediction": [1.0, 0.0, 1.0, 1.0],
            "proba:1": [0.9, 0.2, 0.6, 0.7],
            "proba:0": [0.1, 0.8, 0.4, 0.3],
        }
    )
    labels = {1: 1, 2: "0", 3: 0, 4: "1"}
    row = analyse_performance(frame, labels, "classification", positive_class=1, min_labels=1).row()
    assert row.accuracy == 0.75
    assert (row.precision, row.recall) == (2 / 3, 1.0)
