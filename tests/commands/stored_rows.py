"""Estimation and multivariate results stored by hand, for the readers' tests (the CLI, the read
API, the report): each window's rows are built as the schema's dataclasses and stored with
``results.save_window``, as the worker stores what analysis hands it.

``store_story`` stores one model's two windows: the latest with every kind, where site-a's
estimate is not trusted (calibration broke: its labels say 0.62 where 0.81 was promised) and
its rows drifted jointly, site-b's estimate is trusted (labels agree), node-1 had too few rows
for either, and the others are plain; the earlier window has drift only (it was analysed before
estimation and multivariate drift existed). ``store_unestimable`` stores a regression model's
window: the fleet's estimation row says it cannot be estimated."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from monitor.demo_model import paths
from monitor.schema import (
    CALIBRATION,
    DRIFT,
    ESTIMATION,
    FLEET,
    FLEET_KEY,
    INSUFFICIENT_DATA,
    LABELS_AGREE,
    MULTIVARIATE,
    NO_CONTRARY_EVIDENCE,
    NODE,
    NOT_CLASSIFICATION,
    OK,
    PERFORMANCE,
    SITE,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    ResultTable,
)
from monitor.storage import models, nodes, registry, results
from monitor.storage.engine import begin_write
from monitor.storage.results import KindResults

MODEL = "pump-failure"
REGRESSOR = "wear-rate"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
#: The latest window's start; the earlier one starts a window before.
LATEST = T0 + WINDOW
CARD: dict[str, Any] = json.loads(paths().card.read_text())
BROKE = (
    "not trusted: calibration broke at site site-a: on 40 labelled records the model was "
    "right 62% of the time where its calibrated confidence promised 81% (band 0.74\u20130.88)"
)
AGREE = "labels agree: 0.90 realised on 60 labelled records, 0.91 promised (0.85\u20130.97)"
UNCHECKED = "no labelled records yet to check it"
#: The scopes of the story: (kind, key, site) of its nodes.
NODES = (("node-1", "site-a"), ("node-2", "site-a"), ("node-3", "site-b"))


@dataclass(frozen=True)
class Story:
    """What ``store_story`` stored: the model's id and its windows' starts."""

    model_id: int
    version_id: int
    earlier: datetime
    latest: datetime


def estimate(
    kind: str,
    key: str,
    accuracy: float | None = 0.85,
    *,
    half_band: float = 0.03,
    trusted: bool | None = True,
    evidence: str | None = NO_CONTRARY_EVIDENCE,
    reason: str | None = UNCHECKED,
    n_rows: int = 400,
    n_labelled: int = 0,
    realised: float | None = None,
    expected: float | None = None,
    status: str = OK,
) -> EstimationScope:
    """An estimation row: every figure ``accuracy``-based with a band of +/- ``half_band``."""

    def band(value: float | None) -> tuple[float | None, float | None, float | None]:
        if value is None:
            return None, None, None
        return value, max(0.0, value - half_band), min(1.0, value + half_band)

    acc, roc, f1 = (
        band(accuracy),
        band(None if accuracy is None else accuracy + 0.05),
        band(None if accuracy is None else accuracy - 0.1),
    )
    return EstimationScope(
        scope_kind=kind,
        scope_key=key,
        status=status,
        task="classification",
        n_rows=n_rows,
        n_scored=n_rows,
        accuracy=acc[0],
        accuracy_lower=acc[1],
        accuracy_upper=acc[2],
        precision=f1[0],
        precision_lower=f1[1],
        precision_upper=f1[2],
        recall=f1[0],
        recall_lower=f1[1],
        recall_upper=f1[2],
        f1=f1[0],
        f1_lower=f1[1],
        f1_upper=f1[2],
        roc_auc=roc[0],
        roc_auc_lower=roc[1],
        roc_auc_upper=roc[2],
        sampling_error=None if accuracy is None else half_band / 3,
        shift_allowance=None if accuracy is None else 0.0,
        n_labelled=n_labelled,
        realised_accuracy=realised,
        expected_accuracy=expected,
        calibration_error=None if realised is None else 0.19,
        trusted=trusted,
        trust_evidence=evidence,
        trust_reason=reason,
    )


def joint(
    kind: str,
    key: str,
    error: float | None = 1.02,
    *,
    drifted: bool | None = False,
    n_rows: int = 400,
    status: str = OK,
) -> MultivariateScope:
    """A multivariate row: the reference's error 1.0, thresholds 0.9-1.1."""
    return MultivariateScope(
        scope_kind=kind,
        scope_key=key,
        status=status,
        n_rows=n_rows,
        method="pca-reconstruction",
        n_components=3,
        reconstruction_error=error,
        reference_error=1.0,
        sampling_error=0.033,
        lower_threshold=0.9,
        upper_threshold=1.1,
        p_value=None if drifted is None else (1e-6 if drifted else 0.4),
        adjusted_p_value=None if drifted is None else (4e-6 if drifted else 0.6),
        drifted=drifted,
        nannyml_drifted=None if drifted is None else drifted,
    )


def drift(kind: str, key: str, n_rows: int = 400) -> DriftScope:
    """A drift row that found nothing (the story's findings are the later kinds')."""
    return DriftScope(kind, key, OK, n_rows, 4, 0, 0.0, False, False, 0.0)


def performance(kind: str, key: str, n_labelled: int, accuracy: float | None) -> PerformanceScope:
    return PerformanceScope(
        kind, key, OK, "classification", 400, n_labelled, n_labelled / 400, accuracy,
        None, None, None, None, None, None,
    )  # fmt: skip


SCOPES = [(FLEET, FLEET_KEY), (SITE, "site-a"), (SITE, "site-b")] + [(NODE, n) for n, _ in NODES]


def latest_estimates() -> list[EstimationScope]:
    rows = {key: estimate(kind, key) for kind, key in SCOPES}
    rows["site-a"] = estimate(
        SITE, "site-a", 0.81, trusted=False, evidence=CALIBRATION, reason=BROKE,
        n_labelled=40, realised=0.62, expected=0.81,
    )  # fmt: skip
    rows["site-b"] = estimate(
        SITE, "site-b", 0.91, evidence=LABELS_AGREE, reason=AGREE,
        n_labelled=60, realised=0.90, expected=0.91,
    )  # fmt: skip
    rows["node-1"] = estimate(
        NODE, "node-1", None, trusted=None, evidence=None, reason=None, n_rows=12,
        status=INSUFFICIENT_DATA,
    )  # fmt: skip
    return list(rows.values())


def latest_multivariate() -> list[MultivariateScope]:
    rows = {key: joint(kind, key) for kind, key in SCOPES}
    rows["site-a"] = joint(SITE, "site-a", 1.31, drifted=True)
    rows["node-1"] = joint(NODE, "node-1", 1.05, drifted=None, n_rows=12, status=INSUFFICIENT_DATA)
    return list(rows.values())


def latest_performance() -> list[PerformanceScope]:
    rows = {key: performance(kind, key, 0, None) for kind, key in SCOPES}
    rows["site-a"] = performance(SITE, "site-a", 40, 0.62)
    rows["site-b"] = performance(SITE, "site-b", 60, 0.90)
    return list(rows.values())


def table(row_type: type, rows: list[Any]) -> KindResults:
    return KindResults(ResultTable.from_rows(row_type, rows))


def register(engine: Engine, name: str = MODEL) -> tuple[int, int]:
    """The model with version 1 in production and the story's nodes; its id and version's."""
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, name).id
        version = registry.register_version(
            conn, model_id, "1", artifact=b"onnx", card={**CARD, "version": "1"}
        )
        registry.promote(conn, model_id, "1")
        known = {n.name for n in nodes.list_nodes(conn)}
        for node, site in NODES:
            if node not in known:
                nodes.add_node(conn, node, site=site)
    return model_id, version.id


def save(
    engine: Engine, model_id: int, version_id: int, start: datetime, kinds: dict[str, KindResults]
) -> None:
    with begin_write(engine) as conn:
        results.save_window(
            conn, model_id, start, start + WINDOW, kinds,
            model_version_id=version_id, n_reference=5000,
        )  # fmt: skip


def store_story(engine: Engine) -> Story:
    """The model's two windows (see the module's docstring)."""
    model_id, version_id = register(engine)
    drift_rows = table(DriftScope, [drift(kind, key) for kind, key in SCOPES])
    save(engine, model_id, version_id, T0, {DRIFT: drift_rows})
    save(
        engine, model_id, version_id, LATEST,
        {
            DRIFT: drift_rows,
            PERFORMANCE: table(PerformanceScope, latest_performance()),
            ESTIMATION: table(EstimationScope, latest_estimates()),
            MULTIVARIATE: table(MultivariateScope, latest_multivariate()),
        },
    )  # fmt: skip
    return Story(model_id, version_id, T0, LATEST)


def store_unestimable(engine: Engine) -> int:
    """A regression model's window: its fleet estimation row says not_classification (nothing
    else of the kind is stored); multivariate drift was judged as usual."""
    model_id, version_id = register(engine, REGRESSOR)
    unestimable = replace(
        estimate(FLEET, FLEET_KEY, None, trusted=None, evidence=None, reason=None),
        status=NOT_CLASSIFICATION,
        task="regression",
    )
    save(
        engine, model_id, version_id, LATEST,
        {
            DRIFT: table(DriftScope, [drift(kind, key) for kind, key in SCOPES]),
            ESTIMATION: table(EstimationScope, [unestimable]),
            MULTIVARIATE: table(MultivariateScope, [joint(k, key) for k, key in SCOPES]),
        },
    )  # fmt: skip
    return model_id
