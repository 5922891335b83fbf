"""Calibrating a model's class probabilities on labelled reference rows, as NannyML's CBPE does.

A class's probability is recalibrated with isotonic regression on the reference's labels only
when NannyML's test says it helps: on ten stratified 90/10 splits, the expected calibration error
of the held-out rows (10 bins of equal count) is lower after calibration than before. A fitted
calibrator is kept as its isotonic step points and applied by linear interpolation, which is what
scikit-learn's ``IsotonicRegression(out_of_bounds="clip").predict`` computes, at numpy speed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit

#: NannyML's test: splits, held-out share, seed, and bins of the expected calibration error.
SPLITS = 10
TEST_SIZE = 0.1
SEED = 42
ECE_BINS = 10
#: Scores that already separate the classes this well are left alone (NannyML's rule).
SEPARATED_AUC = 0.999


@dataclass(frozen=True, eq=False)
class Calibrator:
    """A monotone map from a model's score to a calibrated probability (``None``: identity)."""

    x: np.ndarray | None = None
    y: np.ndarray | None = None

    @property
    def identity(self) -> bool:
        return self.x is None

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        values = np.asarray(scores, dtype=np.float64)
        if self.x is None or self.y is None:
            return values
        # np.interp clips to the end values outside the fitted range: out_of_bounds="clip".
        return np.interp(values, self.x, self.y)

    @classmethod
    def fit(cls, scores: np.ndarray, truth: np.ndarray) -> Calibrator:
        """Isotonic regression of ``truth`` (0/1) on ``scores``, kept as its step points."""
        regression = IsotonicRegression(out_of_bounds="clip", increasing=True)
        regression.fit(scores, truth.astype(np.float64))
        return cls(
            np.asarray(regression.X_thresholds_, np.float64),
            np.asarray(regression.y_thresholds_, np.float64),
        )


def calibrator_for(scores: np.ndarray, truth: np.ndarray) -> Calibrator:
    """The calibrator NannyML's CBPE would use for one class: isotonic when
    ``needs_calibration`` says so, else the identity."""
    try:
        needed = needs_calibration(scores, truth)
    except ValueError:
        # Too few rows of a class for ten stratified splits (NannyML raises): with no
        # evidence that calibration helps, the model's own probabilities stand.
        needed = False
    return Calibrator.fit(scores, truth) if needed else Calibrator()


def needs_calibration(scores: np.ndarray, truth: np.ndarray) -> bool:
    """NannyML's ``needs_calibration``: False for one class or near-perfectly separated scores;
    else whether isotonic calibration lowers the expected calibration error of held-out rows."""
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    if np.unique(truth).size < 2:
        return False
    if roc_auc_score(truth, scores) > SEPARATED_AUC:
        return False
    splits = StratifiedShuffleSplit(n_splits=SPLITS, test_size=TEST_SIZE, random_state=SEED)
    held_truth, held_scores, held_calibrated = [], [], []
    for train, test in splits.split(scores, truth):
        calibrator = Calibrator.fit(scores[train], truth[train])
        held_truth.append(truth[test])
        held_scores.append(scores[test])
        held_calibrated.append(calibrator(scores[test]))
    y = np.concatenate(held_truth).astype(np.float64)
    before = _equal_count_ece(y, np.concatenate(held_scores))
    after = _equal_count_ece(y, np.concatenate(held_calibrated))
    return bool(before > after)


def _equal_count_ece(truth: np.ndarray, scores: np.ndarray) -> float:
    """NannyML's expected calibration error: rows sorted by score, cut into ``ECE_BINS`` runs
    of equal length (the last takes the remainder)."""
    size = scores.size
    bins = ECE_BINS if size > 2 * ECE_BINS else size // 2
    if bins < 2:
        raise ValueError(f"{size} rows cannot be cut into two calibration bins")
    order = scores.argsort()
    scores, truth = scores[order], truth[order]
    edges = np.arange(0, size + 1, size // bins)
    edges[-1] = size
    total = 0.0
    for left, right in itertools.pairwise(edges):
        weight = (right - left) / size
        total += weight * abs(scores[left:right].mean() - truth[left:right].mean())
    return total
