"""Every verdict policy of the analysis, in one place: when a feature or a scope has drifted,
when a feature has a data-quality issue, when performance has enough labels to be reported.

Drift: each method (``spec.METHODS``) owns its statistic, threshold and rule; this module adds
what a fleet needs on top (a minimum of rows, false-discovery control across the window) and
the scope verdict: a scope drifted when at least one of its features drifted. The share of
drifted features is reported beside it, never turned into a verdict here (a threshold on it
is an alert rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monitor.analysis.spec import Method
from monitor.analysis.tables import nullable

DEFAULT_MIN_ROWS = 200
DEFAULT_FDR = 0.01
DEFAULT_MIN_LABELS = 50
#: Estimation: scored rows a scope needs for an estimate, and labelled rows for checking one.
DEFAULT_ESTIMATION_MIN_ROWS = 50
DEFAULT_CHECK_LABELS = 20
#: NannyML's band: this many sampling errors either side of an estimate.
BAND_ERRORS = 3.0


@dataclass(frozen=True)
class DriftPolicy:
    """When a (scope, feature) pair gets a drift verdict, and what it is."""

    #: Fewer present values than this at a scope: no verdict (``insufficient_data``).
    min_rows: int = DEFAULT_MIN_ROWS
    #: The false discovery rate of distance methods' noise test (Benjamini-Hochberg across
    #: every (scope, column) pair of the window).
    fdr: float = DEFAULT_FDR

    def __post_init__(self) -> None:
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {self.min_rows}")
        if not 0 < self.fdr < 1:
            raise ValueError(f"fdr must be in (0, 1), got {self.fdr}")

    def verdicts(
        self, method: Method, statistic: np.ndarray, adjusted_p: np.ndarray, threshold: float
    ) -> np.ndarray:
        """The product's verdict per scope (callers mask scopes without one). A distance
        drifts when it reaches its threshold AND its noise test's adjusted p-value is at most
        the FDR (an effect as large as Evidently requires, and not sampling noise); a test
        drifts when its adjusted p-value is at most its threshold (the significance level
        becomes the false discovery rate)."""
        with np.errstate(invalid="ignore"):
            if method.is_distance:
                return np.asarray(method.evidently_verdicts(statistic, threshold)) & (
                    adjusted_p <= self.fdr
                )
            return np.asarray(adjusted_p <= threshold)


def scope_drifted(n_features: np.ndarray, n_drifted: np.ndarray) -> np.ndarray:
    """A scope's verdict: drifted when any feature with a verdict drifted (None: no verdict on
    any feature), as an object array of True / False / None."""
    return nullable(n_features > 0, n_drifted > 0)


@dataclass(frozen=True)
class QualityThresholds:
    """When a feature's data quality at a scope is an issue (each figure is reported anyway).

    Configurable per deployment (``MONITOR_QUALITY_*`` settings)."""

    #: Share of rows with the value missing above which it is an issue.
    max_missing_share: float = 0.05
    #: Share of present numerical values outside the reference's [min, max].
    max_out_of_range_share: float = 0.01
    #: Share of rows with a category the reference never had.
    max_new_category_share: float = 0.0
    #: Present values of the wrong type (text in a numerical column) are always an issue.
    invalid_is_issue: bool = True

    def __post_init__(self) -> None:
        for name in ("max_missing_share", "max_out_of_range_share", "max_new_category_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a share in [0, 1], got {value}")

    def issues(
        self,
        n_rows: np.ndarray,
        missing_share: np.ndarray,
        out_of_range_share: np.ndarray,
        n_new_category_rows: np.ndarray,
        n_invalid: np.ndarray,
    ) -> np.ndarray:
        """The verdict per (scope, feature): True when any figure breaks its threshold
        (NaN figures, meaning not applicable, never do)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            new_share = np.where(n_rows > 0, n_new_category_rows / np.maximum(n_rows, 1), 0.0)
            issue = (
                (np.nan_to_num(missing_share, nan=0.0) > self.max_missing_share)
                | (np.nan_to_num(out_of_range_share, nan=0.0) > self.max_out_of_range_share)
                | (np.nan_to_num(new_share, nan=0.0) > self.max_new_category_share)
            )
        if self.invalid_is_issue:
            issue |= n_invalid > 0
        return issue


@dataclass(frozen=True)
class EstimationPolicy:
    """When a scope gets a performance estimate, and what checks it."""

    #: Fewer scored rows (prediction and probabilities) than this: no estimate.
    min_rows: int = DEFAULT_ESTIMATION_MIN_ROWS
    #: Labelled rows of a scope that suffice to check the estimate against what they realise
    #: (fewer than a performance figure needs: the check is judged with its own band).
    check_labels: int = DEFAULT_CHECK_LABELS
    #: Sampling errors either side of an estimate in its band.
    band_errors: float = BAND_ERRORS

    def __post_init__(self) -> None:
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {self.min_rows}")
        if self.check_labels < 1:
            raise ValueError(f"check_labels must be at least 1, got {self.check_labels}")
        if not self.band_errors > 0:
            raise ValueError(f"band_errors must be positive, got {self.band_errors}")


@dataclass(frozen=True)
class AnalysisPolicy:
    """The verdict policy of every kind, as a deployment configures it."""

    drift: DriftPolicy = field(default_factory=DriftPolicy)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    #: Fewer labelled records than this at a scope: no performance figures.
    min_labels: int = DEFAULT_MIN_LABELS
    estimation: EstimationPolicy = field(default_factory=EstimationPolicy)
