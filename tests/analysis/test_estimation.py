"""Performance estimation without labels: every scope's figures at once equal a plain loop over
the scopes with NannyML's own functions; the calibration is NannyML's; what cannot be
estimated says why; on the fleet simulator the estimate follows sensor drift."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.isotonic import IsotonicRegression

from monitor.analysis.calibration import Calibrator, needs_calibration
from monitor.analysis.estimation import Estimator, estimate_performance
from monitor.analysis.policy import EstimationPolicy
from monitor.analysis.scopes import ScopeSet
from monitor.schema import (
    CALIBRATION,
    FLEET,
    INSUFFICIENT_DATA,
    LABELS_AGREE,
    NO_PROBABILITIES,
    NO_REFERENCE_LABELS,
    NOT_CLASSIFICATION,
    OK,
)

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
nml_metrics = pytest.importorskip("nannyml.performance_estimation.confidence_based.metrics")
nml_calibration = pytest.importorskip("nannyml.calibration")
nml_errors = pytest.importorskip("nannyml.sampling_error.binary_classification")

EVERY_SCOPE = EstimationPolicy(min_rows=1)


def known(value: float | None) -> float:
    """A figure that must be there."""
    assert value is not None
    return value


def reference_frame(classes: list[str], n: int, seed: int) -> pd.DataFrame:
    """Labelled reference rows whose probabilities are miscalibrated (labels follow a sharper
    curve), rounded to two decimals (ties, as real scores have)."""
    rng = np.random.default_rng(seed)
    proba = _probabilities(rng, n, len(classes))
    sharper = proba**2 / (proba**2).sum(axis=1, keepdims=True)
    truth = (rng.random(n)[:, None] > np.cumsum(sharper, axis=1)).sum(axis=1)
    frame = pd.DataFrame(
        {
            "feature:x": rng.normal(size=n) + proba[:, -1] * 3,
            "feature:noise": rng.normal(size=n),
            "feature:kind": pd.Categorical(np.where(proba[:, 0] > 0.5, "a", "b")),
            "prediction": pd.Categorical(np.array(classes)[proba.argmax(axis=1)]),
            **{f"proba:{c}": proba[:, i] for i, c in enumerate(classes)},
            "label": np.array(classes)[np.minimum(truth, len(classes) - 1)],
        }
    )
    return frame


def _probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    logits = rng.normal(size=(n, k)) * 1.6
    proba = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 2)
    proba[:, -1] = np.clip(1.0 - proba[:, :-1].sum(axis=1), 0.0, 1.0)
    return proba


def window_frame(classes: list[str], n: int, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A window of 60 nodes of very different sizes (two with no usable probabilities, a few
    rows without a prediction), at 5 sites (some rows at none) and 9 groups."""
    rng = np.random.default_rng(seed)
    proba = _probabilities(rng, n, len(classes))
    node = rng.choice(60, n, p=np.r_[np.full(50, 0.019), np.full(10, 0.005)])
    proba[node == 7] = np.nan
    proba[(node == 8) & (rng.random(n) < 0.5), 0] = np.nan
    proba[node == 9, -1] = np.nan
    prediction = np.array(classes, dtype=object)[np.nan_to_num(proba, nan=-1).argmax(axis=1)]
    prediction[rng.random(n) < 0.01] = None
    site = np.array([f"site-{i % 5}" for i in range(60)], dtype=object)[node]
    site[node >= 55] = None
    frame = pd.DataFrame(
        {
            "row_key": np.arange(n, dtype=np.int64) * 3 + 11,
            "node_id": node,
            "prediction": prediction,
            **{f"proba:{c}": proba[:, i] for i, c in enumerate(classes)},
        }
    )
    scopes = {"site": site, "group": (node % 9).astype(str), "node": node}
    return frame, scopes


def scope_rows(scopes: dict[str, Any], n: int) -> dict[tuple[str, str], np.ndarray]:
    """Each scope's rows, as a loop over scopes sees them."""
    rows = {(FLEET, ""): np.ones(n, bool)}
    for kind, keys in scopes.items():
        keys = np.asarray(keys, dtype=object)
        for key in pd.unique(keys[pd.notna(keys)]):
            rows[(kind, str(key))] = keys == key
    return rows


def truth_for(frame: pd.DataFrame, classes: list[str], seed: int) -> pd.Series:
    """Labels for 40% of the rows, given as the model's classes."""
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(frame)) < 0.4
    return pd.Series(rng.choice(classes, chosen.sum()), index=frame["row_key"][chosen].to_numpy())


def per_scope_loop(
    estimator: Estimator, frame: pd.DataFrame, scopes: dict[str, Any], labels: pd.Series
) -> dict[tuple[str, str], dict[str, float]]:
    """Every figure by a plain loop over scopes: NannyML's ``estimate_*`` functions on each
    scope's rows, NannyML's sampling errors, and the labelled checks by hand."""
    classes = list(estimator.classes)
    k = len(classes)
    proba = frame[list(estimator.proba_columns)].to_numpy(dtype=float)
    pred = frame["prediction"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    scored = pd.notna(pred) & np.isfinite(proba).all(axis=1)
    out = {}
    for scope, inside in scope_rows(scopes, len(frame)).items():
        rows = inside & scored
        n = int(rows.sum())
        figures: dict[str, float] = {"n_scored": n}
        out[scope] = figures
        if n == 0:
            continue
        p = pred[rows].astype(int)
        q = estimator.calibrate(proba[rows])
        per_class = {}
        for c in range(k):
            y = (p == c).astype(int)
            per_class[c] = (
                nml_metrics.estimate_precision(y, q[:, c]),
                nml_metrics.estimate_recall(y, q[:, c]),
                nml_metrics.estimate_f1(y, q[:, c]),
            )
        if estimator.positive_class is not None:
            chosen = [classes.index(estimator.positive_class)]
        else:
            chosen = list(range(k))
        if k == 2:
            c = estimator.scored_class
            figures["accuracy"] = nml_metrics.estimate_accuracy((p == c).astype(int), q[:, c])
            figures["roc_auc"] = _nannyml_auc(q[:, c], proba[rows][:, 0], ties_share_weight=True)
        else:
            figures["accuracy"] = float(np.mean(q[np.arange(n), p]))
            figures["roc_auc"] = float(
                np.mean(
                    [
                        _nannyml_auc(q[:, c], proba[rows][:, c], ties_share_weight=False)
                        for c in chosen
                    ]
                )
            )
        for i, name in enumerate(("precision", "recall", "f1")):
            figures[name] = float(np.mean([per_class[c][i] for c in chosen]))
        figures["sampling_error"] = estimator.sd_reference / np.sqrt(n)
        shares = np.bincount(p, minlength=k) / n
        ref = estimator.reference_shares
        figures["shift_allowance"] = max(
            0.0,
            0.5 * np.abs(shares - ref).sum() - np.sqrt(ref * (1 - ref)).sum() / np.sqrt(n),
        )
        keys = frame["row_key"].to_numpy()[rows]
        has = np.isin(keys, labels.index)
        figures["n_labelled"] = int(has.sum())
        if has.any():
            truth = labels.loc[keys[has]].to_numpy()
            right = truth == np.array(classes)[p[has]]
            sure = q[np.arange(n), p][has]
            figures["realised_accuracy"] = float(right.mean())
            figures["expected_accuracy"] = float(sure.mean())
            bins = np.minimum((sure * 10).astype(int), 9)
            figures["calibration_error"] = (
                sum(abs(right[bins == b].sum() - sure[bins == b].sum()) for b in range(10))
                / has.sum()
            )
    return out


def _nannyml_auc(calibrated: np.ndarray, score: np.ndarray, *, ties_share_weight: bool) -> float:
    """NannyML's estimated ROC AUC; for two classes its own ``estimate_roc_auc`` (equal scores
    have equal calibrated probabilities, so its order of them does not matter). For more, the
    same curve with equal scores as one step, as scikit-learn draws it: each row a positive of
    weight ``w`` and a negative of weight ``1 - w`` (NannyML leaves the order of equal scores,
    whose renormalised probabilities differ, to its sort)."""
    expected_positive = calibrated.sum()
    if expected_positive <= 0 or expected_positive >= calibrated.size:
        return float("nan")
    if ties_share_weight:
        return float(nml_metrics.estimate_roc_auc(calibrated, score))
    n = score.size
    return float(
        metrics.roc_auc_score(
            np.r_[np.ones(n), np.zeros(n)],
            np.r_[score, score],
            sample_weight=np.r_[calibrated, 1.0 - calibrated],
        )
    )


@pytest.mark.parametrize(
    ("classes", "positive"),
    [
        (["no", "yes"], "yes"),
        (["no", "yes"], None),
        (["a", "b", "c"], None),
        (["a", "b", "c"], "b"),
    ],
)
def test_every_scope_at_once_equals_a_loop_over_scopes(
    classes: list[str], positive: str | None
) -> None:
    reference = reference_frame(classes, 4_000, seed=1)
    estimator = Estimator.fit(
        reference, task="classification", classes=classes, positive_class=positive
    )
    assert estimator.status == OK
    assert not all(c.identity for c in estimator.calibrators)  # the test calibrates
    frame, scopes = window_frame(classes, 15_000, seed=2)
    labels = truth_for(frame, classes, seed=3)

    result = estimate_performance(estimator, frame, scopes, labels=labels, policy=EVERY_SCOPE)
    expected = per_scope_loop(estimator, frame, scopes, labels)

    assert (result.rows[0].scope_kind, result.rows[0].scope_key) == (FLEET, "")
    assert {(r.scope_kind, r.scope_key) for r in result.rows} == set(expected)
    assert result.row("node", "7").n_scored == 0
    assert result.row("node", "7").status == INSUFFICIENT_DATA
    for row in result.rows:
        want = expected[(row.scope_kind, row.scope_key)]
        assert row.n_scored == want["n_scored"]
        if not want["n_scored"]:
            assert row.accuracy is None and row.trusted is None
            continue
        for name in (
            "accuracy",
            "precision",
            "recall",
            "f1",
            "sampling_error",
            "shift_allowance",
            "realised_accuracy",
            "expected_accuracy",
            "calibration_error",
        ):
            assert getattr(row, name) == pytest.approx(want.get(name), abs=1e-9), name
        if np.isnan(want["roc_auc"]):
            assert row.roc_auc is None
        else:  # NannyML rounds its cumulative sums to 5 decimals
            assert row.roc_auc == pytest.approx(want["roc_auc"], abs=1e-6)
        assert row.n_labelled == want["n_labelled"]
        half = 3 * (known(row.sampling_error) + estimator.reference_error()) + known(
            row.shift_allowance
        )
        assert row.accuracy_lower == pytest.approx(max(0.0, known(row.accuracy) - half))
        assert row.accuracy_upper == pytest.approx(min(1.0, known(row.accuracy) + half))


def test_the_calibrator_is_scikit_learns_isotonic_regression_and_nannymls_choice() -> None:
    rng = np.random.default_rng(4)
    scores = np.round(rng.random(5_000), 2)
    truth = (rng.random(5_000) < scores**2).astype(int)
    fitted = Calibrator.fit(scores, truth)
    regression = IsotonicRegression(out_of_bounds="clip").fit(scores, truth)
    unseen = np.r_[-0.5, np.linspace(0, 1, 1001), 1.5]
    np.testing.assert_allclose(fitted(unseen), regression.predict(unseen), atol=1e-12)

    for labels in (
        truth,  # miscalibrated: calibration helps
        (rng.random(5_000) < scores).astype(int),  # calibrated already
        (scores > 0.5).astype(int),  # separated perfectly: left alone
        np.zeros(5_000, int),  # one class
    ):
        theirs = nml_calibration.needs_calibration(
            labels, scores, nml_calibration.IsotonicCalibrator()
        )
        assert needs_calibration(scores, labels) == theirs


def test_sampling_error_components_are_nannymls() -> None:
    reference = reference_frame(["no", "yes"], 6_000, seed=5)
    estimator = Estimator.fit(
        reference, task="classification", classes=["no", "yes"], positive_class="yes"
    )
    y = (reference["label"] == "yes").astype(int)
    p = (reference["prediction"] == "yes").astype(int)
    rows = pd.DataFrame(index=range(400))
    components = {
        "accuracy": nml_errors.accuracy_sampling_error(
            nml_errors.accuracy_sampling_error_components(y, p), rows
        ),
        "precision": nml_errors.precision_sampling_error(
            nml_errors.precision_sampling_error_components(y, p), rows
        ),
        "recall": nml_errors.recall_sampling_error(
            nml_errors.recall_sampling_error_components(y, p), rows
        ),
        "f1": nml_errors.f1_sampling_error(nml_errors.f1_sampling_error_components(y, p), rows),
        "roc_auc": nml_errors.auroc_sampling_error(
            nml_errors.auroc_sampling_error_components(y, reference["proba:yes"]), rows
        ),
    }
    for name, error in components.items():
        assert estimator.error_scales[name] / np.sqrt(400) == pytest.approx(error, rel=1e-12)


def test_labels_and_predictions_are_compared_as_text() -> None:
    """1, 1.0 and "1" are one class, in the reference, the window and the labels."""
    reference = reference_frame(["0", "1"], 3_000, seed=6)
    reference["label"] = reference["label"].astype(float)
    reference["prediction"] = reference["prediction"].astype(str).astype(int)
    estimator = Estimator.fit(reference, task="classification", classes=[0, 1], positive_class=1)
    assert (estimator.status, estimator.classes, estimator.positive_class) == (OK, ("0", "1"), "1")
    frame, scopes = window_frame(["0", "1"], 2_000, seed=7)
    frame["prediction"] = pd.to_numeric(frame["prediction"]).astype("Float64")
    as_text = truth_for(frame, ["0", "1"], seed=8)
    results = [
        estimate_performance(estimator, frame, scopes, labels=labels).row()
        for labels in (as_text, as_text.astype(int), as_text.astype(float).to_dict())
    ]
    assert results[0].n_labelled > 700
    assert results[0] == results[1] == results[2]


def test_what_cannot_be_estimated_is_one_fleet_row_saying_why() -> None:
    reference = reference_frame(["no", "yes"], 2_000, seed=9)
    frame, scopes = window_frame(["no", "yes"], 1_000, seed=10)
    cases = [
        (Estimator.fit(reference, task="regression", classes=None, positive_class=None), frame),
        (
            Estimator.fit(
                reference.drop(columns="label"),
                task="classification",
                classes=["no", "yes"],
                positive_class="yes",
            ),
            frame,
        ),
        (
            Estimator.fit(
                reference.assign(label=None),
                task="classification",
                classes=["no", "yes"],
                positive_class="yes",
            ),
            frame,
        ),
        (
            Estimator.fit(reference, task="classification", classes=None, positive_class="yes"),
            frame.drop(columns=["proba:yes"]),
        ),
    ]
    statuses = [NOT_CLASSIFICATION, NO_REFERENCE_LABELS, NO_REFERENCE_LABELS, NO_PROBABILITIES]
    for (estimator, window), status in zip(cases, statuses, strict=True):
        result = estimate_performance(estimator, window, scopes, labels={})
        assert len(result.rows) == 1
        row = result.row()
        assert (row.scope_kind, row.status, row.n_rows) == (FLEET, status, 1_000)
        assert row.accuracy is None and row.trusted is None and row.trust_reason is None


def test_scopes_with_too_few_scored_rows_get_no_figures() -> None:
    reference = reference_frame(["no", "yes"], 2_000, seed=11)
    estimator = Estimator.fit(
        reference, task="classification", classes=["no", "yes"], positive_class="yes"
    )
    frame, scopes = window_frame(["no", "yes"], 6_000, seed=12)
    result = estimate_performance(
        estimator, frame, ScopeSet.build(len(frame), scopes), labels={}, policy=EstimationPolicy()
    )
    for row in result.rows:
        if row.n_scored >= 50:
            assert row.status == OK and row.accuracy is not None and row.trusted is True
        else:
            assert row.status == INSUFFICIENT_DATA
            assert (row.accuracy, row.roc_auc, row.trusted, row.trust_reason) == (None,) * 4
    assert {r.status for r in result.rows} == {OK, INSUFFICIENT_DATA}


def test_the_band_widens_where_predicted_classes_moved_from_the_reference_mix() -> None:
    reference = reference_frame(["no", "yes"], 4_000, seed=13)
    estimator = Estimator.fit(
        reference, task="classification", classes=["no", "yes"], positive_class="yes"
    )
    # Rows like the reference's: node 2 a random half of them, node 1 only those of the other
    # half that the model leans to "yes" on.
    frame = reference_frame(["no", "yes"], 8_000, seed=14).drop(columns="label")
    half = np.random.default_rng(16).random(len(frame)) < 0.5
    frame["node_id"] = np.where(half, 2, 1)
    frame = frame[half | (frame["proba:yes"] > 0.3)].reset_index(drop=True)
    frame["row_key"] = np.arange(len(frame))
    moved = (frame["node_id"] == 1).to_numpy()
    result = estimate_performance(estimator, frame, {"node": frame["node_id"]}, labels={})
    steady, shifted = result.row("node", "2"), result.row("node", "1")
    s_ref = estimator.reference_shares[1]
    share = (frame.loc[moved, "prediction"] == "yes").mean()
    noise = 2 * np.sqrt(s_ref * (1 - s_ref) / shifted.n_scored)
    allowance = known(shifted.shift_allowance)
    assert allowance == pytest.approx(abs(share - s_ref) - noise)
    assert allowance > 0.1
    assert known(steady.shift_allowance) < allowance
    accuracy = known(shifted.accuracy)
    error = known(shifted.sampling_error) + estimator.reference_error()
    assert known(shifted.accuracy_upper) - known(shifted.accuracy_lower) == pytest.approx(
        min(1.0, accuracy + 3 * error + allowance) - max(0.0, accuracy - 3 * error - allowance)
    )


def test_the_model_leans_on_the_features_its_confidence_follows() -> None:
    rng = np.random.default_rng(15)
    n = 5_000
    strong, weak = rng.normal(size=n), rng.normal(size=n)
    kind = rng.choice(["a", "b", "c"], n)
    score = 2.0 * strong + 0.6 * weak + np.where(kind == "a", 1.5, 0.0)
    p = 1 / (1 + np.exp(-score))
    reference = pd.DataFrame(
        {
            "feature:strong": strong,
            "feature:weak": weak,
            "feature:kind": pd.Categorical(kind),
            "feature:noise": rng.normal(size=n),
            "feature:flag": rng.random(n) < 0.5,
            "prediction": np.where(p >= 0.5, "yes", "no"),
            "proba:yes": p,
            "proba:no": 1 - p,
            "label": np.where(rng.random(n) < p, "yes", "no"),
        }
    )
    estimator = Estimator.fit(
        reference, task="classification", classes=["no", "yes"], positive_class="yes"
    )
    assert estimator.leaned_on[0] == "strong"
    assert "kind" in estimator.leaned_on
    assert "noise" not in estimator.leaned_on and "flag" not in estimator.leaned_on
    assert len(estimator.leaned_on) <= 5


def test_rows_outside_the_fleet_count_only_for_their_node() -> None:
    """A small node's pooled earlier rows ride along for its own scope only."""
    reference = reference_frame(["no", "yes"], 3_000, seed=18)
    estimator = Estimator.fit(
        reference, task="classification", classes=["no", "yes"], positive_class="yes"
    )
    frame, _ = window_frame(["no", "yes"], 3_000, seed=19)
    frame["node_id"] = frame["node_id"] % 3
    labels = truth_for(frame, ["no", "yes"], seed=20)
    in_fleet = np.arange(len(frame)) < 2_000
    pooled = estimate_performance(
        estimator,
        frame,
        ScopeSet.build(len(frame), {"node": frame["node_id"].to_numpy()}, in_fleet=in_fleet),
        labels=labels,
        policy=EVERY_SCOPE,
    )
    alone = estimate_performance(
        estimator, frame[in_fleet], {"node": frame["node_id"][in_fleet]}, labels=labels
    )
    node = estimate_performance(
        estimator, frame[frame["node_id"] == 1], {}, labels=labels, policy=EVERY_SCOPE
    )
    # The fleet's sentence names its worst nodes by their own checks, pooled rows and all.
    assert same(pooled.row(), alone.row(), but=("trust_reason",))
    assert same(
        pooled.row("node", "1"), node.row(), but=("scope_kind", "scope_key", "trust_reason")
    )


def same(one: Any, other: Any, *, but: tuple[str, ...] = ()) -> bool:
    """Two rows agree field by field (figures to rounding), but for ``but``."""
    for name in one.__dataclass_fields__:
        a, b = getattr(one, name), getattr(other, name)
        if name in but:
            continue
        if isinstance(a, float) and isinstance(b, float):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12), name
        else:
            assert a == b, name
    return True


# --- the fleet simulator --------------------------------------------------------------------------

PER_NODE = 400


@pytest.fixture(scope="module")
def demo_estimator() -> Estimator:
    from monitor.demo_model import paths
    from monitor.jobs.reference import window_shaped

    reference = window_shaped(pd.read_parquet(paths().reference))
    return Estimator.fit(
        reference, task="classification", classes=["fail", "ok"], positive_class="fail"
    )


def simulated_window(name: str, window: int, windows: int = 9) -> tuple[pd.DataFrame, pd.Series]:
    """One simulated day of 8 nodes at 4 sites under a scenario, with the real ONNX model's
    predictions, as a window frame and its true labels."""
    from monitor.fleet.machines import MachineFleetGenerator
    from monitor.fleet.scenarios import plan_fleet, scenario
    from tests.jobs.fleetdata import runtime

    plans = plan_fleet(8, sites=4)
    plan = scenario(name, hours=24.0 * windows, sites=sorted({p.site for p in plans}))
    model = runtime()
    parts, truth = [], []
    for node in plans:
        readings = (
            MachineFleetGenerator(3)
            .child(f"{node.name}@{window}")
            .readings(
                PER_NODE, start_hour=24.0 * window, hours=24.0, **plan.knobs(node, 24.0 * window)
            )
        )
        rows = readings.rows()
        predictions = model.predict_batch(rows)
        part = pd.DataFrame({f"feature:{k}": v for k, v in pd.DataFrame(rows).items()})
        part["prediction"] = [p.label for p in predictions]
        for cls in ("fail", "ok"):
            part[f"proba:{cls}"] = [p.probabilities[cls] for p in predictions]
        part["node_id"], part["site"] = node.name, node.site
        part["affected"] = plan.affects(node)
        parts.append(part)
        truth.extend(readings.labels())
    frame = pd.concat(parts, ignore_index=True)
    frame["row_key"] = np.arange(len(frame))
    return frame, pd.Series(truth, index=frame["row_key"])


def test_sensor_drift_lowers_the_estimate_where_it_happens_and_labels_land_in_the_band(
    demo_estimator: Estimator,
) -> None:
    before, _ = simulated_window("sensor-drift", 1)
    after, truth = simulated_window("sensor-drift", 7)
    scopes = {"site": after["site"].to_numpy(), "node": after["node_id"].to_numpy()}
    was = estimate_performance(
        demo_estimator, before, {"node": before["node_id"].to_numpy()}, labels={}
    )
    now = estimate_performance(demo_estimator, after, scopes, labels={})
    affected = sorted(after.loc[after.affected, "node_id"].unique())
    unaffected = sorted(after.loc[~after.affected, "node_id"].unique())
    assert affected and unaffected
    for node in affected:
        assert known(now.row("node", node).accuracy) < known(was.row("node", node).accuracy) - 0.01
    for node in unaffected:
        change = known(now.row("node", node).accuracy) - known(was.row("node", node).accuracy)
        assert abs(change) < 0.015
    # The labels, released: every node's and site's realised accuracy lies in its band, and
    # the affected nodes' bands were widened for their shifted predictions.
    right = (after["prediction"] == truth.to_numpy()).to_numpy()
    for kind, keys in scopes.items():
        for key in np.unique(keys):
            row = now.row(kind, key)
            realised = right[keys == key].mean()
            assert known(row.accuracy_lower) <= realised <= known(row.accuracy_upper), key
            assert row.trusted is True
    assert all(known(now.row("node", node).shift_allowance) > 0 for node in affected)


def partial_labels(frame: pd.DataFrame, truth: pd.Series, share: float) -> pd.Series:
    """The true labels of a random ``share`` of the window's records."""
    chosen = np.random.default_rng(17).random(len(frame)) < share
    return truth[chosen]


def test_concept_drift_with_a_partial_label_release_is_not_trusted(
    demo_estimator: Estimator,
) -> None:
    """The inputs do not move, so the estimate stays where it was, confidently; the few labels
    that came back contradict it, and the verdict says so where it happened."""
    frame, truth = simulated_window("concept-drift", 7)
    scopes = {"site": frame["site"].to_numpy(), "node": frame["node_id"].to_numpy()}
    labels = partial_labels(frame, truth, 0.15)
    result = estimate_performance(demo_estimator, frame, scopes, labels=labels)
    fleet = result.row()
    assert known(fleet.accuracy) > 0.93  # the estimate did not move
    assert known(fleet.shift_allowance) < 0.01  # nor did the predicted classes
    assert known(fleet.realised_accuracy) < 0.87
    assert (fleet.trusted, fleet.trust_evidence) == (False, CALIBRATION)
    assert str(fleet.trust_reason).startswith("not trusted: calibration broke across the fleet")
    assert "; worst: site " in str(fleet.trust_reason)
    sites = [r for r in result.rows if r.scope_kind == "site"]
    assert all(r.trusted is False for r in sites)
    nodes = [r for r in result.rows if r.scope_kind == "node"]
    assert sum(r.trusted is False for r in nodes) >= len(nodes) // 2


def test_a_steady_fleet_with_a_partial_label_release_is_trusted(
    demo_estimator: Estimator,
) -> None:
    frame, truth = simulated_window("steady", 7)
    scopes = {"site": frame["site"].to_numpy(), "node": frame["node_id"].to_numpy()}
    result = estimate_performance(
        demo_estimator, frame, scopes, labels=partial_labels(frame, truth, 0.15)
    )
    for row in result.rows:
        assert (row.trusted, row.trust_evidence) == (True, LABELS_AGREE), row.trust_reason
        assert str(row.trust_reason).startswith("labels agree: ")
