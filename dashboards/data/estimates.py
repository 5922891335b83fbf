"""Estimated performance and multivariate drift as the Model and Node pages show them: stored
estimation and multivariate rows as frames, why a model cannot be estimated, and an estimate
with its band and trust verdict in words. Pure (no streamlit); verdicts are the stored ones.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from monitor.schema import (
    NO_PROBABILITIES,
    NO_REFERENCE_LABELS,
    NOT_CLASSIFICATION,
    EstimationScope,
    MultivariateScope,
)
from monitor.storage.results import Stored

#: The figures a classifier's window has both realised (on its labels) and estimated (without
#: them), as a person names them; the page shows one at a time.
METRICS = {
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}
#: Why a model's performance cannot be estimated, by the status of its fleet estimation row.
NOT_ESTIMABLE = {
    NOT_CLASSIFICATION: "the model is not a classifier",
    NO_PROBABILITIES: "its records carry no class probabilities",
    NO_REFERENCE_LABELS: "its reference data has no labels and probabilities to calibrate on",
}
#: A trust verdict in words (None: no estimate to judge).
VERDICTS: dict[bool | None, str] = {True: "trusted", False: "not trusted"}
#: Columns of an estimate frame: per window, the stored estimate of each of METRICS with its
#: band (``<metric>_lower``, ``<metric>_upper``), the labels that checked it, and the verdict.
ESTIMATE_COLUMNS = (
    "window_start",
    "window_end",
    "status",
    "n_rows",
    "n_scored",
    *(f"{m}{side}" for m in METRICS for side in ("", "_lower", "_upper")),
    "n_labelled",
    "realised_accuracy",
    "calibration_error",
    "trusted",
    "trust_evidence",
    "trust_reason",
)
#: Columns of a multivariate frame (one row per scope and window).
MULTIVARIATE_COLUMNS = (
    "scope",
    "window_start",
    "window_end",
    "status",
    "n_rows",
    "reconstruction_error",
    "reference_error",
    "lower_threshold",
    "upper_threshold",
    "adjusted_p_value",
    "drifted",
)


def estimate_frame(stored: list[Stored[EstimationScope]]) -> pd.DataFrame:
    """Stored estimation rows as a frame of ESTIMATE_COLUMNS, one row per window (figures
    NaN where not estimated; ``trusted`` True, False or None)."""
    names = ESTIMATE_COLUMNS[2:]
    frame = pd.DataFrame(
        [
            {
                "window_start": r.window_start,
                "window_end": r.window_end,
                **{c: getattr(r.result, c) for c in names},
            }
            for r in stored
        ],
        columns=list(ESTIMATE_COLUMNS),
    )
    figures = [c for c in ESTIMATE_COLUMNS if c.startswith(tuple(METRICS))]
    figures += ["realised_accuracy", "calibration_error"]
    return frame.astype({c: float for c in figures} | {"trusted": object})


def not_estimable(fleet: list[Stored[EstimationScope]]) -> str | None:
    """Why the model's performance cannot be estimated, from its fleet rows (the newest says):
    None when it can, or when no row says it cannot."""
    if not fleet:
        return None
    return NOT_ESTIMABLE.get(fleet[-1].result.status)


def latest_estimate(estimated: pd.DataFrame, metric: str = "accuracy") -> pd.Series | None:
    """The newest window with an estimate of ``metric`` (None: no window has one)."""
    shown = estimated[estimated[metric].notna()]
    return None if shown.empty else shown.iloc[-1]


def estimate_text(row: pd.Series, metric: str = "accuracy") -> str:
    """One estimate with its band and its trust verdict, as a person reads it: "estimated
    accuracy 0.93 (0.90-0.96), trusted: labels agree ..." or "..., not trusted: calibration
    broke at ..." (the band's dash an en dash)."""
    figure = f"estimated {METRICS[metric]} {row[metric]:.2f}"
    low, high = row[f"{metric}_lower"], row[f"{metric}_upper"]
    if not (pd.isna(low) or pd.isna(high)):
        figure += f" ({low:.2f}–{high:.2f})"  # noqa: RUF001
    return f"{figure}, {trust_text(row['trusted'], row['trust_reason'])}"


def trust_text(trusted: bool | None, reason: str | None) -> str:
    """A trust verdict and its reason ("not trusted: calibration broke at ..."); a reason that
    already says the verdict is not said twice."""
    verdict = VERDICTS.get(trusted, "no trust verdict")
    if reason is None or (isinstance(reason, float) and pd.isna(reason)) or not reason:
        return verdict
    text = str(reason).strip()
    if text.lower().startswith(("not trusted", "trusted")):
        return text
    return f"{verdict}: {text}"


def multivariate_rows(stored: list[Stored[MultivariateScope]], label: str) -> list[dict[str, Any]]:
    """Stored multivariate rows as MULTIVARIATE_COLUMNS records of one scope."""
    return [
        {
            "scope": label,
            "window_start": r.window_start,
            "window_end": r.window_end,
            **{c: getattr(r.result, c) for c in MULTIVARIATE_COLUMNS[3:]},
        }
        for r in stored
    ]


def multivariate_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """MULTIVARIATE_COLUMNS records as a frame (figures NaN where missing, ``drifted`` True,
    False or None)."""
    figures = MULTIVARIATE_COLUMNS[5:-1]
    frame = pd.DataFrame(rows, columns=list(MULTIVARIATE_COLUMNS))
    return frame.astype({c: float for c in figures} | {"drifted": object})
