"""Judging a performance figure with its uncertainty: a window with 40 labels does not page anyone.

A figure breaches its bound only when its whole confidence interval lies beyond the bound, and
is clear only when its whole interval lies on the good side; an interval that straddles the
bound is ``unknown`` (too little evidence either way), as is a figure without enough labels.

* accuracy, precision, recall, f1, roc_auc: the Wilson score interval of a proportion at the
  rule's confidence, with n = the window's labelled records. That n is exact for accuracy. For
  precision and recall the effective n is smaller (the predicted or actual positives), for f1
  and roc_auc there is no binomial n at all: n_labelled makes their interval narrower than the
  truth, i.e. these are judged a little more readily than a strict interval would. That is
  the approximation: precision/recall/f1/roc_auc carry their n_labelled, not an effective n.
* mae, rmse: no distribution of the errors is stored, so there is no interval; the figure is
  compared with the bound as it is, and only in a window with at least ``min_labels`` labels
  (the analysis's own minimum), else unknown.

An estimated figure (performance estimated without labels, ``monitor.schema.EstimationScope``)
comes with its own band and a trust verdict: it breaches when its whole band lies beyond the
bound, and is clear only when its whole band lies on the good side AND the estimate is trusted.
An estimate that is not trusted (or whose trust is unknown) can breach but never clears: a
model whose calibration broke may be confidently wrong, and it must not say all is well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from monitor.alerts.rules import LOWER_IS_BETTER

BREACH = "breach"
CLEAR = "clear"
UNKNOWN = "unknown"


def wilson(p: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval (low, high) of proportions ``p`` observed on ``n`` trials,
    element-wise; NaN where n < 1 or p is NaN."""
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = float(norm.ppf(0.5 + confidence / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        z2n = z * z / n
        centre = (p + z2n / 2) / (1 + z2n)
        half = z * np.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    bad = ~(n >= 1) | np.isnan(p)
    low[bad] = np.nan
    high[bad] = np.nan
    return low, high


@dataclass(frozen=True)
class Judged:
    """Per figure: breach / clear / unknown, and the interval it was judged with (NaN: none)."""

    states: np.ndarray
    low: np.ndarray
    high: np.ndarray


def judge(
    metric: str,
    values: np.ndarray,
    n_labelled: np.ndarray,
    bounds: np.ndarray | float,
    *,
    confidence: float,
    min_labels: int,
) -> Judged:
    """Judge figures of ``metric`` against ``bounds`` (below it is bad for accuracy and the
    like, above it for mae and rmse), element-wise. NaN figures or bounds are unknown."""
    values = np.asarray(values, dtype=np.float64)
    n = np.asarray(n_labelled, dtype=np.float64)
    bound = np.broadcast_to(np.asarray(bounds, dtype=np.float64), values.shape)
    states = np.full(values.shape, UNKNOWN, dtype=object)
    known = ~np.isnan(values) & ~np.isnan(bound)
    if metric in LOWER_IS_BETTER:
        low = high = np.full(values.shape, np.nan)
        enough = known & (n >= max(min_labels, 1))
        states[enough & (values > bound)] = BREACH
        states[enough & (values <= bound)] = CLEAR
        return Judged(states, low, high)
    low, high = wilson(values, n, confidence)
    enough = known & ~np.isnan(low)
    states[enough & (high < bound)] = BREACH
    states[enough & (low >= bound)] = CLEAR
    return Judged(states, low, high)


def judge_estimate(
    metric: str,
    values: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    trusted: np.ndarray,
    bounds: np.ndarray | float,
) -> Judged:
    """Judge estimated figures of ``metric`` by their bands ``[lower, upper]`` against
    ``bounds``, element-wise: breach when the whole band is on the bad side, clear when it is
    wholly on the good side and ``trusted`` is True (None or False never clears); NaN figures,
    bands or bounds are unknown."""
    values = np.asarray(values, dtype=np.float64)
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    bound = np.broadcast_to(np.asarray(bounds, dtype=np.float64), values.shape)
    # Element-wise: True alone trusts (None, False and a missing verdict do not).
    trusting = np.asarray(np.asarray(trusted, dtype=object) == True, dtype=bool)  # noqa: E712
    states = np.full(values.shape, UNKNOWN, dtype=object)
    known = ~(np.isnan(values) | np.isnan(low) | np.isnan(high) | np.isnan(bound))
    if metric in LOWER_IS_BETTER:
        breached, cleared = low > bound, high <= bound
    else:
        breached, cleared = high < bound, low >= bound
    states[known & breached] = BREACH
    states[known & cleared & trusting] = CLEAR
    return Judged(states, low, high)
