"""What the Model and Node pages say of an estimate (``monitor.dashboards.data.estimates``): its
figure with its band and its trust verdict in one line, the verdict said once however the
stored reason begins, why a model cannot be estimated for each status that says so, and the
frames the charts draw from (one row per stored row, gaps as NaN, verdicts kept as stored)."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.dashboards.data import estimates
from monitor.schema import (
    FLEET,
    FLEET_KEY,
    INSUFFICIENT_DATA,
    NO_PROBABILITIES,
    NO_REFERENCE_LABELS,
    NODE,
    NOT_CLASSIFICATION,
    OK,
    EstimationScope,
    MultivariateScope,
)
from monitor.storage.results import Stored

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def stored(row: Any, index: int = 0) -> Stored[Any]:
    start = T0 + index * WINDOW
    return Stored(
        id=index + 1,
        model_id=1,
        window_start=start,
        window_end=start + WINDOW,
        node_id=None,
        model_version_id=1,
        n_reference=1000,
        computed_at=start + 2 * WINDOW,
        result=row,
    )


def estimate(**known: Any) -> EstimationScope:
    row = {f.name: None for f in fields(EstimationScope)}
    row |= {"scope_kind": FLEET, "scope_key": FLEET_KEY, "status": OK, "task": "classification"}
    row |= {"n_rows": 500, "n_scored": 500, "n_labelled": 0}
    return EstimationScope(**row | known)


def test_an_estimate_is_said_with_its_band_and_its_verdict() -> None:
    frame = estimates.estimate_frame(
        [
            stored(
                estimate(
                    accuracy=0.934,
                    accuracy_lower=0.901,
                    accuracy_upper=0.962,
                    trusted=True,
                    trust_reason="labels agree: 0.93 realised on 40 labelled records",
                )
            )
        ]
    )

    assert estimates.estimate_text(frame.iloc[0]) == (
        "estimated accuracy 0.93 (0.90–0.96), trusted: labels agree: 0.93 realised on 40 "  # noqa: RUF001
        "labelled records"
    )


@pytest.mark.parametrize(
    ("trusted", "reason", "said"),
    [
        (
            False,
            "not trusted: calibration broke at site north",
            "not trusted: calibration broke at site north",
        ),
        (False, "calibration broke at site north", "not trusted: calibration broke at site north"),
        (
            True,
            "no labelled records yet to check it",
            "trusted: no labelled records yet to check it",
        ),
        (True, None, "trusted"),
        (None, None, "no trust verdict"),
    ],
)
def test_the_verdict_is_said_once_whatever_the_reason_begins_with(
    trusted: bool | None, reason: str | None, said: str
) -> None:
    assert estimates.trust_text(trusted, reason) == said


def test_a_figure_without_a_band_is_said_without_one() -> None:
    frame = estimates.estimate_frame(
        [stored(estimate(f1=0.5, trusted=False, trust_reason="not trusted: outputs drifted"))]
    )

    assert estimates.estimate_text(frame.iloc[0], "f1") == (
        "estimated F1 0.50, not trusted: outputs drifted"
    )


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (NOT_CLASSIFICATION, "the model is not a classifier"),
        (NO_PROBABILITIES, "its records carry no class probabilities"),
        (NO_REFERENCE_LABELS, "its reference data has no labels and probabilities to calibrate on"),
        (OK, None),
        (INSUFFICIENT_DATA, None),
    ],
)
def test_why_a_model_cannot_be_estimated_is_its_newest_fleet_rows_status(
    status: str, why: str | None
) -> None:
    rows = [stored(estimate(status=OK, accuracy=0.9), 0), stored(estimate(status=status), 1)]

    assert estimates.not_estimable(rows) == why
    assert estimates.not_estimable([]) is None


def test_the_estimate_frame_has_a_row_per_stored_row_and_keeps_the_verdicts() -> None:
    rows = [
        stored(estimate(accuracy=0.9, trusted=True), 0),
        stored(estimate(status=INSUFFICIENT_DATA, n_scored=3), 1),
        stored(estimate(accuracy=0.95, trusted=False, trust_reason="not trusted: history"), 2),
    ]

    frame = estimates.estimate_frame(rows)

    assert list(frame.columns) == list(estimates.ESTIMATE_COLUMNS)
    assert list(frame["window_start"]) == [r.window_start for r in rows]
    assert list(frame["trusted"]) == [True, None, False]
    assert frame["accuracy"].tolist()[0] == 0.9 and math.isnan(frame["accuracy"].tolist()[1])
    latest = estimates.latest_estimate(frame)
    assert latest is not None and latest["window_start"] == rows[2].window_start
    assert estimates.latest_estimate(estimates.estimate_frame([])) is None
    assert estimates.latest_estimate(frame, "roc_auc") is None


def test_the_multivariate_frame_is_one_row_per_scope_and_window() -> None:
    row = {f.name: None for f in fields(MultivariateScope)}
    row |= {"scope_kind": NODE, "scope_key": "edge-1", "status": OK, "n_rows": 200}
    row |= {"method": "pca-reconstruction", "n_components": 3}
    rows = [
        stored(MultivariateScope(**row | {"reconstruction_error": 1.4, "drifted": True}), 0),
        stored(MultivariateScope(**row | {"status": INSUFFICIENT_DATA}), 1),
    ]

    frame = estimates.multivariate_frame(estimates.multivariate_rows(rows, "Node edge-1"))

    assert list(frame.columns) == list(estimates.MULTIVARIATE_COLUMNS)
    assert list(frame["scope"]) == ["Node edge-1", "Node edge-1"]
    assert list(frame["drifted"]) == [True, None]
    assert frame["reconstruction_error"].tolist()[0] == 1.4
    assert math.isnan(frame["reconstruction_error"].tolist()[1])
    assert estimates.multivariate_frame([]).empty
