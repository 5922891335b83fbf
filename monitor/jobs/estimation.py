"""What a window's performance estimate is judged by: the evidence its own drift results give,
and the latest labelled window of each scope (did the estimate hold there?).

The trust rules themselves are analysis's (``monitor.analysis.trust``); this module gathers
their inputs from a window's fresh results and from storage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection

from monitor.analysis.policy import EstimationPolicy
from monitor.analysis.trust import PastWindow, TrustEvidence
from monitor.schema import (
    CALIBRATION,
    FEATURE,
    LABELS_AGREE,
    EstimationScope,
    plain_values,
)
from monitor.storage import results
from monitor.storage.results import KindResults

ScopeKey = tuple[str, str]


def evidence_of(
    drift: KindResults | None, history: Mapping[ScopeKey, Sequence[PastWindow]]
) -> TrustEvidence:
    """The trust evidence of a window: per scope, its input features that drifted and whether
    its outputs (the prediction or a class probability) did, from the window's drift results;
    and each scope's labelled history."""
    drifted: dict[ScopeKey, list[str]] = {}
    outputs: dict[ScopeKey, bool] = {}
    if drift is not None:
        scopes = drift.scopes.columns
        if "prediction_drifted" in scopes:
            for kind, key, flag in zip(
                plain_values(scopes["scope_kind"]),
                plain_values(scopes["scope_key"]),
                plain_values(scopes["prediction_drifted"]),
                strict=True,
            ):
                if flag is not None:
                    outputs[(kind, key)] = bool(flag)
        if drift.features is not None and len(drift.features):
            features = drift.features.columns
            for kind, key, name, role, flag in zip(
                plain_values(features["scope_kind"]),
                plain_values(features["scope_key"]),
                plain_values(features["feature"]),
                plain_values(features["role"]),
                plain_values(features["drifted"]),
                strict=True,
            ):
                if flag and role == FEATURE:
                    drifted.setdefault((kind, key), []).append(name)
    return TrustEvidence(drifted_features=drifted, outputs_drifted=outputs, history=history)


def labelled_history(
    conn: Connection,
    model_id: int,
    *,
    since: datetime,
    before: datetime,
    policy: EstimationPolicy,
) -> dict[ScopeKey, list[PastWindow]]:
    """Per scope, its latest window before ``before`` (since ``since``) whose estimate could be
    checked against enough labels, as the trust rules read it."""
    latest = results.latest_checked_estimates(
        conn, model_id, since=since, before=before, min_labelled=policy.check_labels
    )
    return {key: [_past(row.window_start, row.result, policy)] for key, row in latest.items()}


def _past(window_start: datetime, row: EstimationScope, policy: EstimationPolicy) -> PastWindow:
    """A checked window as the trust rules read it: the accuracy its labelled records realised,
    and the band they were checked against. That band is the one the window's own check used
    (the estimate for those records, with the sampling error of that many records, widened by
    the scope's shift allowance), not the scope's band for all its rows: a sample of the
    window's records scatters more than the whole window does."""
    lower = upper = None
    expected, error = row.expected_accuracy, row.sampling_error
    if expected is not None and error is not None and row.n_labelled > 0:
        # sampling_error is sd / sqrt(n_scored); the labelled records' is sd / sqrt(n_labelled).
        half = policy.band_errors * error * math.sqrt(row.n_scored / row.n_labelled)
        half += row.shift_allowance or 0.0
        lower, upper = max(0.0, expected - half), min(1.0, expected + half)
    # Its stored verdict, where its own labels decided it (or a break at its site reached it).
    held = {CALIBRATION: False, LABELS_AGREE: True}.get(row.trust_evidence or "")
    return PastWindow(
        window_start=window_start,
        n_labelled=row.n_labelled,
        realised_accuracy=row.realised_accuracy,
        accuracy_lower=lower,
        accuracy_upper=upper,
        held=held,
    )
