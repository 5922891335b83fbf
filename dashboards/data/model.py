"""The Model page's data: one model's analysed windows, its drift, multivariate drift,
performance (realised on labels, and estimated without them) and quality over a period for one
scope, the feature x window verdicts, reference-against-current distributions of one window,
and the window's report.

Every function here is a ``common.read`` function: an engine first, hashable arguments (names,
datetimes, ``(scope kind, scope key)`` tuples), a picklable answer. Verdicts are the stored
ones (``storage.results`` via ``storage.timelines``); nothing here judges.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from monitor.alerts.rules import DEFAULT_CONFIDENCE
from monitor.alerts.uncertainty import wilson
from monitor.dashboards.data.estimates import (
    estimate_frame,
    multivariate_frame,
    multivariate_rows,
    not_estimable,
)
from monitor.jobs.reference import ReferenceCache
from monitor.jobs.reports import BuiltReport, build_report
from monitor.schema import (
    ESTIMATION,
    FEATURE,
    FEATURE_PREFIX,
    FLEET,
    FLEET_KEY,
    GROUP,
    NODE,
    PERFORMANCE,
    PREDICTION,
    SITE,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    QualityScope,
)
from monitor.storage import models, registry, results, timelines
from monitor.storage.nodes import list_nodes
from monitor.storage.results import Stored
from monitor.storage.windows import load_window

#: The most windows a timeline reads (the newest of the period): 20 days of 15-minute windows.
MAX_WINDOWS = 2_000
#: The most windows the feature x window heatmap shows (the newest of the period).
HEATMAP_WINDOWS = 96
#: Histogram bins of a numerical column, and the most categories drawn (the rest: "other").
BINS = 30
MAX_CATEGORIES = 20
#: The most values of one side the bin edges are placed on (the counts take every value).
EDGE_SAMPLE = 100_000
#: The confidence of the accuracy band: the alert rules' default, so the band is what they judge.
CONFIDENCE = DEFAULT_CONFIDENCE

DRIFTED = "drifted"
NOT_DRIFTED = "not drifted"
INSUFFICIENT = "insufficient data"
OTHER = "(other)"
MISSING = "(missing)"

Scope = tuple[str, str]

# Reference frames, parsed and profiled once per process for the last few versions looked at.
_REFERENCES = ReferenceCache(size=4)


# --- Scopes -----------------------------------------------------------------------------------


def scope_text(scope: Scope) -> str:
    """A scope as the CLI's ``--scope`` and the page's ``?scope=`` spell it: ``fleet`` or
    ``KIND:NAME``."""
    kind, key = scope
    return FLEET if kind == FLEET else f"{kind}:{key}"


def scope_label(scope: Scope) -> str:
    """A scope as a person reads it: ``Fleet``, ``Site north``, ``Node edge-3``."""
    kind, key = scope
    return "Fleet" if kind == FLEET else f"{kind.capitalize()} {key}"


def parse_scope(text: str | None) -> Scope | None:
    """``fleet`` or ``KIND:NAME`` as a scope, None when it is neither."""
    if text == FLEET:
        return (FLEET, FLEET_KEY)
    kind, _, key = (text or "").partition(":")
    return (kind, key) if kind in (SITE, GROUP, NODE) and key else None


# --- The model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelState:
    """What the page needs to know before it draws: does the model have a reference to
    compare with, and has any window been analysed."""

    name: str
    model_id: int
    versions: tuple[str, ...]
    #: Versions registered with reference data.
    with_reference: tuple[str, ...]
    latest_window: datetime | None


def model_state(engine: Engine, name: str) -> ModelState:
    """The model's versions, which have reference data, and its latest analysed window."""
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        versions = registry.versions(conn, model.id)
        return ModelState(
            name=name,
            model_id=model.id,
            versions=tuple(v.version for v in versions),
            with_reference=tuple(v.version for v in versions if v.reference_rows),
            latest_window=results.latest_window_start(conn, model.id),
        )


@dataclass(frozen=True)
class WindowChoice:
    """An analysed window, with its fleet verdict, as the window picker lists it."""

    start: datetime
    end: datetime
    n_rows: int
    drifted: bool | None
    share_drifted: float | None

    @property
    def label(self) -> str:
        verdict = {True: "drifted", False: "no drift", None: "no verdict"}[self.drifted]
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%H:%M} UTC · {verdict}"


def windows(engine: Engine, name: str, start: datetime | None, end: datetime) -> list[WindowChoice]:
    """The model's analysed windows in the period (ending after ``start``, starting before
    ``end``), newest first, at most MAX_WINDOWS."""
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        rows = timelines.drift_timeline(
            conn, model.id, FLEET, FLEET_KEY, **_period(start, end, MAX_WINDOWS)
        )
    return [
        WindowChoice(
            r.window_start, r.window_end, r.result.n_rows, r.result.drifted, r.result.share_drifted
        )
        for r in reversed(rows)
    ]


def scopes(engine: Engine, name: str, window_start: datetime) -> list[Scope]:
    """Every scope judged in the window: the fleet, then sites, groups and nodes by name."""
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        return timelines.window_scopes(conn, model.id, window_start)


# --- One window, one scope: the tiles ---------------------------------------------------------


@dataclass(frozen=True)
class ScopeWindow:
    """One scope's stored results in one window (None: the kind was not stored for it)."""

    drift: Stored[DriftScope] | None
    #: Its stored per-column drift rows, and the drifted features by name.
    features: tuple[DriftFeature, ...]
    drifted_features: tuple[str, ...]
    quality: Stored[QualityScope] | None
    quality_issues: tuple[str, ...]
    performance: Stored[PerformanceScope] | None
    estimation: Stored[EstimationScope] | None = None
    multivariate: Stored[MultivariateScope] | None = None


def scope_window(engine: Engine, name: str, window_start: datetime, scope: Scope) -> ScopeWindow:
    """One scope's drift, quality, performance (realised and estimated) and multivariate drift
    in one window."""
    kind, key = scope
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        stored = timelines.scope_window(conn, model.id, window_start, kind, key)
    if stored is None:
        return ScopeWindow(None, (), (), None, (), None)
    drift = _maybe(stored.drift_of, kind, key)
    return ScopeWindow(
        drift=drift,
        features=tuple(stored.drift_features.get(drift.id, [])) if drift is not None else (),
        drifted_features=tuple(stored.drifted_features(kind, key)),
        quality=_maybe(stored.quality_of, kind, key),
        quality_issues=tuple(stored.quality_issues(kind, key)),
        performance=_maybe(stored.performance_of, kind, key),
        estimation=_maybe(stored.estimation_of, kind, key),
        multivariate=_maybe(stored.multivariate_of, kind, key),
    )


def _maybe(find: Any, kind: str, key: str) -> Any:
    try:
        return find(kind, key)
    except KeyError:
        return None


# --- Over time --------------------------------------------------------------------------------


def drift_over_time(
    engine: Engine, name: str, chosen: tuple[Scope, ...], start: datetime | None, end: datetime
) -> pd.DataFrame:
    """Each chosen scope's share drifted and verdict per window of the period, oldest first:
    one row per (scope, window) with ``scope`` (its label), ``window_start``, ``window_end``,
    ``share_drifted``, ``drifted`` (True, False or None), ``n_drifted``, ``n_features``,
    ``n_rows``, ``status``."""
    rows = []
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        for scope in chosen:
            for r in timelines.drift_timeline(
                conn, model.id, *scope, **_period(start, end, MAX_WINDOWS)
            ):
                d = r.result
                rows.append(
                    {
                        "scope": scope_label(scope),
                        "window_start": r.window_start,
                        "window_end": r.window_end,
                        "share_drifted": d.share_drifted,
                        "drifted": d.drifted,
                        "n_drifted": d.n_drifted,
                        "n_features": d.n_features,
                        "n_rows": d.n_rows,
                        "status": d.status,
                    }
                )
    columns = [
        "scope",
        "window_start",
        "window_end",
        "share_drifted",
        "drifted",
        "n_drifted",
        "n_features",
        "n_rows",
        "status",
    ]
    return pd.DataFrame(rows, columns=columns).astype({"drifted": object})


@dataclass(frozen=True)
class Heatmap:
    """One scope's verdict per (feature, window): ``features`` top to bottom, ``windows``
    oldest first, and the stored rows as a long frame (``cells``: one row per judged
    (window, feature) with its verdict, method, test, statistic, threshold, p-values and row
    counts). ``truncated``: the period held more windows than HEATMAP_WINDOWS."""

    features: list[str]
    windows: list[datetime]
    cells: pd.DataFrame
    truncated: bool


def drift_heatmap(
    engine: Engine, name: str, scope: Scope, start: datetime | None, end: datetime
) -> Heatmap:
    """The scope's feature x window drift verdicts over the period's newest HEATMAP_WINDOWS."""
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        period = _period(start, end, HEATMAP_WINDOWS + 1)
        starts = timelines.window_starts(conn, model.id, **period)
        matrix = timelines.drift_matrix(
            conn, model.id, *scope, **_period(start, end, HEATMAP_WINDOWS)
        )
    rows = [
        {
            "window_start": window,
            "feature": feature,
            "role": cell.role,
            "verdict": verdict(cell.drifted),
            "drifted": cell.drifted,
            "method": cell.method,
            "test": cell.test,
            "statistic": cell.statistic,
            "threshold": cell.threshold,
            "p_value": cell.p_value,
            "adjusted_p_value": cell.adjusted_p_value,
            "n_current": cell.n_current,
            "n_reference": cell.n_reference,
            "status": cell.status,
        }
        for (window, feature), cell in matrix.cells.items()
    ]
    columns = [
        "window_start",
        "feature",
        "role",
        "verdict",
        "drifted",
        "method",
        "test",
        "statistic",
        "threshold",
        "p_value",
        "adjusted_p_value",
        "n_current",
        "n_reference",
        "status",
    ]
    return Heatmap(
        features=matrix.features,
        windows=[w.window_start for w in matrix.windows],
        cells=pd.DataFrame(rows, columns=columns).astype({"drifted": object}),
        truncated=len(starts) > HEATMAP_WINDOWS,
    )


def verdict(drifted: bool | None) -> str:
    """A stored verdict in words."""
    return {True: DRIFTED, False: NOT_DRIFTED, None: INSUFFICIENT}[drifted]


@dataclass(frozen=True)
class Performance:
    """One scope's performance over a period: ``realised`` on its labelled records and
    ``estimated`` without labels (``estimate_frame``), each one row per window with a stored
    row, oldest first. ``not_estimable`` says why the model's performance cannot be estimated
    (None: it can, or nothing stored says it cannot)."""

    realised: pd.DataFrame
    estimated: pd.DataFrame
    not_estimable: str | None


def performance_over_time(
    engine: Engine, name: str, scope: Scope, start: datetime | None, end: datetime
) -> Performance:
    """The scope's realised and estimated performance per window of the period (the
    estimates' columns: ``estimates.ESTIMATE_COLUMNS``).

    ``realised``: ``window_start``, ``window_end``, ``task``, ``status``, ``n_rows``,
    ``n_labelled``, ``label_coverage``, the metrics (``accuracy``, ``f1``, ``mae``, ``rmse``,
    ...) and the accuracy's Wilson interval at CONFIDENCE on its labelled records
    (``accuracy_low``, ``accuracy_high``; NaN without an accuracy). ``estimated``:
    ESTIMATE_COLUMNS."""
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        period = _period(start, end, MAX_WINDOWS)
        found = timelines.scope_timelines(
            conn, model.id, (PERFORMANCE, ESTIMATION), *scope, **period
        )
        estimates: list[Stored[EstimationScope]] = found[ESTIMATION]
        fleet = estimates if scope == (FLEET, FLEET_KEY) else None
        if not estimates and fleet is None:
            # A model that cannot be estimated stores the fleet's row alone, saying why.
            fleet = timelines.estimation_timeline(conn, model.id, FLEET, FLEET_KEY, **period)
    return Performance(
        realised=_realised(found[PERFORMANCE]),
        estimated=estimate_frame(estimates),
        not_estimable=not_estimable(fleet or []),
    )


def _realised(stored: list[Stored[PerformanceScope]]) -> pd.DataFrame:
    metrics = ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")
    frame = pd.DataFrame(
        [
            {
                "window_start": r.window_start,
                "window_end": r.window_end,
                "task": r.result.task,
                "status": r.result.status,
                "n_rows": r.result.n_rows,
                "n_labelled": r.result.n_labelled,
                "label_coverage": r.result.label_coverage,
                **{m: getattr(r.result, m) for m in metrics},
            }
            for r in stored
        ],
        columns=[
            "window_start",
            "window_end",
            "task",
            "status",
            "n_rows",
            "n_labelled",
            "label_coverage",
            *metrics,
        ],
    )
    accuracy = frame["accuracy"].astype(float).to_numpy()
    low, high = wilson(accuracy, frame["n_labelled"].astype(float).to_numpy(), CONFIDENCE)
    frame["accuracy_low"] = low
    frame["accuracy_high"] = high
    return frame


def multivariate_over_time(
    engine: Engine, name: str, chosen: tuple[Scope, ...], start: datetime | None, end: datetime
) -> pd.DataFrame:
    """Each chosen scope's multivariate drift per window of the period, oldest first: one row
    per (scope, window) with a stored row, ``estimates.MULTIVARIATE_COLUMNS`` (``scope`` its label,
    ``drifted`` True, False or None)."""
    rows = []
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        for scope in chosen:
            stored: list[Stored[MultivariateScope]] = timelines.multivariate_timeline(
                conn, model.id, *scope, **_period(start, end, MAX_WINDOWS)
            )
            rows += multivariate_rows(stored, scope_label(scope))
    return multivariate_frame(rows)


# --- One window: quality, distributions, report -----------------------------------------------


def quality_table(engine: Engine, name: str, window_start: datetime, scope: Scope) -> pd.DataFrame:
    """The scope's data quality per column in the window: one row per stored quality feature
    row, issues first, then by role and name."""
    kind, key = scope
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        stored = timelines.scope_window(conn, model.id, window_start, kind, key)
    columns = [
        "feature",
        "role",
        "column_kind",
        "issue",
        "status",
        "n_rows",
        "n_missing",
        "missing_share",
        "n_invalid",
        "n_out_of_range",
        "out_of_range_share",
        "n_new_category_rows",
        "n_new_categories",
        "new_categories",
        "constant",
    ]
    row = None if stored is None else _maybe(stored.quality_of, kind, key)
    if stored is None or row is None:
        return pd.DataFrame(columns=columns)
    features = sorted(
        stored.quality_features.get(row.id, []),
        key=lambda f: (not f.issue, f.role != FEATURE, f.feature),
    )
    frame = pd.DataFrame(
        [
            {
                **{c: getattr(f, c) for c in columns if c != "new_categories"},
                "new_categories": ", ".join(
                    f"{name} ({count:,})" for name, count in (f.new_categories or {}).items()
                )
                or None,
            }
            for f in features
        ],
        columns=columns,
    )
    return frame.astype({"issue": object, "constant": object})


@dataclass(frozen=True)
class Distribution:
    """One column's reference and current distributions, binned for drawing: ``bins`` (a
    numerical column's bin centres, or a categorical column's categories), each side's share
    of its present values per bin, and its counts."""

    column: str
    kind: str
    bins: list[Any]
    #: Numerical: the width of each bin (bars drawn edge to edge); categorical: empty.
    widths: list[float]
    reference: list[float]
    current: list[float]
    n_reference: int
    n_current: int
    #: Missing values (left out of the shares and of the counts above).
    missing_reference: int
    missing_current: int


@dataclass(frozen=True)
class Distributions:
    """Reference against current, per column of one window and scope (features by name, then
    the prediction), and which reference they were drawn from."""

    version: str | None
    #: What the stored verdicts were judged against ("version 1", a baseline's name; None:
    #: not recorded).
    judged_against: str | None
    columns: dict[str, Distribution]
    #: Why there is nothing to draw (None when there is).
    missing: str | None = None


def distributions(
    engine: Engine,
    name: str,
    window_start: datetime,
    scope: Scope,
    computed_at: datetime | None = None,
) -> Distributions:
    """Each column's distribution in the scope's records of the window against the reference
    of the version the window was analysed with (kinds as the stored drift rows judged them).

    ``computed_at`` (the scope's drift row's) keys a cache beyond ``common.read``'s short one:
    a window's records are read once for as long as its results stay those (a re-analysis
    after late records has a new ``computed_at``), not at every refresh."""
    return _distributions(engine, name, window_start, scope, computed_at)


@functools.lru_cache(maxsize=32)
def _distributions(
    engine: Engine,
    name: str,
    window_start: datetime,
    scope: Scope,
    computed_at: datetime | None,
) -> Distributions:
    kind, key = scope
    with engine.connect() as conn:
        model = models.get_model(conn, name)
        stored = timelines.scope_window(conn, model.id, window_start, kind, key)
        drift = None if stored is None else _maybe(stored.drift_of, kind, key)
        if stored is None or drift is None:
            return Distributions(None, None, {}, missing="the scope was not judged in this window")
        version = _version(conn, model.id, drift.model_version_id)
        if version is None:
            return Distributions(None, drift.reference, {}, missing="the model has no version")
        reference = _REFERENCES.get(conn, version)
        if reference is None:
            return Distributions(
                version.version,
                drift.reference,
                {},
                missing=f"version {version.version} has no reference data",
            )
        node_ids = None if kind == FLEET else _node_ids(conn, kind, key)
        current = load_window(
            conn, model.id, stored.window_start, stored.window_end, node_ids=node_ids
        )
    kinds = {f.feature: f.column_kind for f in stored.drift_features.get(drift.id, [])}
    wanted = [
        c
        for c in reference.frame.columns
        if isinstance(c, str) and c.startswith(FEATURE_PREFIX) and c in current.columns
    ]
    wanted.sort()
    if PREDICTION in reference.frame.columns and PREDICTION in current.columns:
        wanted.append(PREDICTION)
    out = {}
    for column in wanted:
        shown = column.removeprefix(FEATURE_PREFIX)
        column_kind = kinds.get(shown) or _kind(reference.frame[column])
        out[shown] = _distribution(shown, column_kind, reference.frame[column], current[column])
    return Distributions(version.version, drift.reference, out)


def _version(conn: Connection, model_id: int, version_id: int | None) -> registry.Version | None:
    """The version a window was analysed with, else the one in production."""
    for version in registry.versions(conn, model_id):
        if version.id == version_id:
            return version
    return registry.deployment(conn, model_id).production


def _node_ids(conn: Connection, kind: str, key: str) -> list[int]:
    """The nodes of a site, a group, or the node itself."""
    field = {SITE: "site", GROUP: "group_name", NODE: "name"}[kind]
    return [n.id for n in list_nodes(conn) if getattr(n, field) == key]


def _kind(values: pd.Series) -> str:
    numeric = pd.api.types.is_numeric_dtype(values.dtype)
    return (
        "numerical" if numeric and not pd.api.types.is_bool_dtype(values.dtype) else "categorical"
    )


def _distribution(column: str, kind: str, reference: pd.Series, current: pd.Series) -> Distribution:
    if kind == "numerical":
        ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=np.float64)
        cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64)
        ref_ok, cur_ok = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        edges = _edges(ref_ok, cur_ok)
        ref_share = _shares(np.histogram(np.clip(ref_ok, edges[0], edges[-1]), edges)[0])
        cur_share = _shares(np.histogram(np.clip(cur_ok, edges[0], edges[-1]), edges)[0])
        return Distribution(
            column=column,
            kind=kind,
            bins=((edges[:-1] + edges[1:]) / 2).tolist(),
            widths=np.diff(edges).tolist(),
            reference=ref_share,
            current=cur_share,
            n_reference=int(ref_ok.size),
            n_current=int(cur_ok.size),
            missing_reference=int(ref.size - ref_ok.size),
            missing_current=int(cur.size - cur_ok.size),
        )
    ref_counts = _category_counts(reference)
    cur_counts = _category_counts(current)
    ref_total, cur_total = max(int(ref_counts.sum()), 1), max(int(cur_counts.sum()), 1)
    # Ordered by the reference's shares (then the window's): a new category shows at the end.
    order = sorted(
        set(ref_counts.index) | set(cur_counts.index),
        key=lambda c: (-ref_counts.get(c, 0) / ref_total, -cur_counts.get(c, 0) / cur_total, c),
    )
    shown, rest = order[:MAX_CATEGORIES], order[MAX_CATEGORIES:]
    ref_values = [float(ref_counts.get(c, 0)) for c in shown]
    cur_values = [float(cur_counts.get(c, 0)) for c in shown]
    if rest:
        shown = [*shown, OTHER]
        ref_values.append(float(sum(ref_counts.get(c, 0) for c in rest)))
        cur_values.append(float(sum(cur_counts.get(c, 0) for c in rest)))
    return Distribution(
        column=column,
        kind=kind,
        bins=shown,
        widths=[],
        reference=_shares(np.array(ref_values)),
        current=_shares(np.array(cur_values)),
        n_reference=int(ref_counts.sum()),
        n_current=int(cur_counts.sum()),
        missing_reference=int(reference.isna().sum()),
        missing_current=int(current.isna().sum()),
    )


def _edges(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """BINS equal bins over the middle 99% of either side (one wild value must not squash the
    bars to a line), the quantiles taken on a seeded sample of at most EDGE_SAMPLE values."""
    sides = [_sample(side) for side in (reference, current) if side.size]
    if not sides:
        return np.array([0.0, 1.0])
    low = float(min(np.quantile(side, 0.005) for side in sides))
    high = float(max(np.quantile(side, 0.995) for side in sides))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, BINS + 1)


def _sample(values: np.ndarray) -> np.ndarray:
    if values.size <= EDGE_SAMPLE:
        return values
    return np.random.default_rng(0).choice(values, EDGE_SAMPLE, replace=False)


def _category_counts(values: pd.Series) -> pd.Series:
    """Rows per present value, by the value as text (counted on the codes: a million rows of
    a categorical are never turned into strings)."""
    counts = values.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    counts.index = counts.index.astype(str)
    return counts.groupby(level=0).sum()


def _shares(counts: np.ndarray) -> list[float]:
    total = float(counts.sum())
    return (counts / total).tolist() if total else [0.0] * len(counts)


def report(
    engine: Engine,
    name: str,
    window_start: datetime,
    scope: Scope,
    computed_at: datetime | None = None,
) -> BuiltReport:
    """The window's report for the scope as HTML, Evidently's part included (made on a sample
    of the scope's rows, unless the CLI kept its snapshot; never kept from here: the
    dashboard only reads). ``computed_at`` keys a cache as in ``distributions``: Evidently
    takes seconds."""
    return _report(engine, name, window_start, scope, computed_at)


@functools.lru_cache(maxsize=4)
def _report(
    engine: Engine, name: str, window_start: datetime, scope: Scope, computed_at: datetime | None
) -> BuiltReport:
    with engine.connect() as conn:
        return build_report(
            conn, name, window_start.isoformat(), scope=scope_text(scope), keep_snapshot=False
        )


def _period(start: datetime | None, end: datetime, limit: int) -> dict[str, Any]:
    return {"ending_after": start, "starting_before": end, "limit": limit}
