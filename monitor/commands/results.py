"""Reading results: analysed windows, their verdicts and node health, as the JSON documents the
read API answers and `edge-monitor results --json` prints (one serializer, so both say the
same), and the fleet at a glance for `edge-monitor status`.

Verdicts are read through ``storage.results`` only: a scope drifted when its stored
``DriftScope.drifted`` says so, its drifted features are ``WindowResults.drifted_features``,
its quality issues ``WindowResults.quality_issues``. Nothing here recomputes a verdict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.errors import NotFound, ValidationFailed
from monitor.storage import models, readout, results
from monitor.storage.readout import (
    FLEET,
    FLEET_KEY,
    GROUP,
    NO_PROBABILITIES,
    NO_REFERENCE,
    NO_REFERENCE_LABELS,
    NODE,
    NOT_CLASSIFICATION,
    SCOPE_KINDS,
    SITE,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    NodeState,
    PerformanceScope,
    QualityFeature,
    QualityScope,
    WindowSummary,
)
from monitor.storage.results import Stored, WindowResults
from monitor.storage.types import utcnow

LATEST = "latest"
#: Windows listed when no limit is given, and the most one request may ask for.
DEFAULT_WINDOWS = 20
MAX_WINDOWS = 1000
#: Windows of results since a time when no limit is given, and the most one request may ask
#: for (each window's every scope and feature is in the answer).
DEFAULT_RESULT_WINDOWS = 20
MAX_RESULT_WINDOWS = 100
#: A clock skew seen this recently is shown by `status`.
RECENT_SKEW = timedelta(hours=24)

_SCOPE_ORDER = {kind: i for i, kind in enumerate(SCOPE_KINDS)}


# --- Query values, checked alike for the API and the CLI ----------------------------------------


def invalid(field_name: str, message: str) -> ValidationFailed:
    """A refused query value, its field named as the query names it."""
    return ValidationFailed(
        message, details=[{"code": "invalid_field", "field": field_name, "message": message}]
    )


def parse_scope(text: str | None) -> tuple[str, str | None] | None:
    """``fleet``, ``site:NAME``, ``group:NAME`` or ``node:NAME`` as (scope kind, scope key);
    ``site``, ``group`` or ``node`` alone as (scope kind, None): every scope of that kind; None
    for no scope (every scope)."""
    if text is None:
        return None
    if text == FLEET:
        return FLEET, FLEET_KEY
    if text in (SITE, GROUP, NODE):
        return text, None
    kind, _, key = text.partition(":")
    if kind not in (SITE, GROUP, NODE) or not key:
        raise invalid(
            "scope",
            "scope must be fleet, site:NAME, group:NAME or node:NAME (or site, group or node: "
            f"every scope of the kind), got {text!r}",
        )
    return kind, key


def parse_time(text: str, field_name: str) -> datetime:
    """An ISO 8601 time; UTC unless it carries an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            field_name,
            f"{field_name} must be an ISO 8601 time such as 2026-11-20T08:00:00Z, got {text!r}",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_window(text: str) -> datetime | None:
    """``latest`` (None) or a time the window holds."""
    if text == LATEST:
        return None
    try:
        return parse_time(text, "window")
    except ValidationFailed:
        raise invalid(
            "window",
            f"window must be latest or an ISO 8601 time the window holds, got {text!r}",
        ) from None


def check_limit(limit: int, most: int) -> int:
    if not 1 <= limit <= most:
        raise invalid("limit", f"limit must be 1 to {most}, got {limit}")
    return limit


# --- Documents ----------------------------------------------------------------------------------


def windows_document(
    engine: Engine, model: str, *, limit: int = DEFAULT_WINDOWS, since: datetime | None = None
) -> dict[str, Any]:
    """The model's analysed windows, newest first: what `edge-monitor windows` shows and
    ``GET /v1/models/{model}/windows`` answers."""
    check_limit(limit, MAX_WINDOWS)
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        summaries = readout.window_summaries(conn, found.id, limit=limit, since=since)
    return {"model": found.name, "windows": [_summary(s) for s in summaries]}


def _summary(summary: WindowSummary) -> dict[str, Any]:
    fleet = summary.fleet.result
    return _plain(
        {
            "window_start": summary.window_start,
            "window_end": summary.window_end,
            "n_rows": fleet.n_rows,
            "status": fleet.status,
            "drifted": fleet.drifted,
            "n_features": fleet.n_features,
            "n_drifted": fleet.n_drifted,
            "share_drifted": fleet.share_drifted,
            "nodes": summary.nodes,
            "nodes_drifting": summary.nodes_drifting,
            "revision": summary.revision,
            "n_late": summary.n_late,
            "computed_at": summary.fleet.computed_at,
        }
    )


@dataclass(frozen=True)
class ScopeResults:
    """One scope's stored results of one window, every kind as its typed row (None: not
    stored for this scope), with the drifted features and quality issues storage names."""

    scope_kind: str
    scope_key: str
    drift: Stored[DriftScope] | None
    drifted_features: list[str]
    drift_features: list[DriftFeature]
    quality: Stored[QualityScope] | None
    quality_issues: list[str]
    quality_features: list[QualityFeature]
    performance: Stored[PerformanceScope] | None
    estimation: Stored[EstimationScope] | None
    multivariate: Stored[MultivariateScope] | None

    @property
    def name(self) -> str:
        return scope_name(self.scope_kind, self.scope_key)

    @property
    def estimation_unavailable(self) -> bool:
        """The estimation row says the model cannot be estimated at all (``NOT_ESTIMABLE``)."""
        return self.estimation is not None and self.estimation.result.status in NOT_ESTIMABLE

    @property
    def multivariate_unavailable(self) -> bool:
        """The multivariate row says there was no reference to compare with."""
        return self.multivariate is not None and self.multivariate.result.status == NO_REFERENCE


@dataclass(frozen=True)
class FoundWindow:
    """One analysed window's results: what storage holds for it, the scopes asked for in
    order (fleet, sites, groups, nodes), and what the window says of the two kinds that came
    later (estimation and multivariate drift) as a whole."""

    stored: WindowResults
    scopes: list[ScopeResults]

    @property
    def window_start(self) -> datetime:
        return self.stored.window_start

    @property
    def window_end(self) -> datetime:
        return self.stored.window_end

    @property
    def estimated(self) -> bool:
        """Performance estimation ran on this window (False: analysed before it existed)."""
        return bool(self.stored.estimation)

    @property
    def not_estimable(self) -> str | None:
        """Why the model's performance cannot be estimated in this window (a status of
        ``NOT_ESTIMABLE``, stored on the fleet row alone), or None."""
        return _fleet_status(self.stored.estimation, tuple(NOT_ESTIMABLE))

    @property
    def multivariate_analysed(self) -> bool:
        """Multivariate drift ran on this window (False: analysed before it existed)."""
        return bool(self.stored.multivariate)

    @property
    def multivariate_unjudged(self) -> str | None:
        """Why no scope's multivariate drift was judged (the version has no reference), or
        None."""
        return _fleet_status(self.stored.multivariate, (NO_REFERENCE,))

    def drifting(self) -> list[ScopeResults]:
        """The scopes asked for whose drift verdict is drifted."""
        return [s for s in self.scopes if s.drift is not None and s.drift.result.drifted]

    def multivariate_drifting(self) -> list[ScopeResults]:
        """The scopes asked for whose multivariate verdict is drifted."""
        return [
            s for s in self.scopes if s.multivariate is not None and s.multivariate.result.drifted
        ]

    def untrusted(self) -> list[ScopeResults]:
        """The scopes asked for whose estimate is not trusted."""
        return [
            s
            for s in self.scopes
            if s.estimation is not None and s.estimation.result.trusted is False
        ]

    def judged_estimates(self) -> list[ScopeResults]:
        """The scopes asked for whose estimate has a trust verdict."""
        return [
            s
            for s in self.scopes
            if s.estimation is not None and s.estimation.result.trusted is not None
        ]

    def judged_multivariate(self) -> list[ScopeResults]:
        """The scopes asked for with a multivariate verdict."""
        return [
            s
            for s in self.scopes
            if s.multivariate is not None and s.multivariate.result.drifted is not None
        ]


#: Estimation statuses that say the model cannot be estimated at all (the fleet row alone is
#: stored), and why, in words.
NOT_ESTIMABLE = {
    NOT_CLASSIFICATION: "the model is not a classifier (not_classification)",
    NO_PROBABILITIES: "its records carry no class probabilities (no_probabilities)",
    NO_REFERENCE_LABELS: (
        "its reference data has no labels or probabilities to calibrate on (no_reference_labels)"
    ),
    NO_REFERENCE: "the model version has no reference data (no_reference)",
}


def _fleet_status(rows: Sequence[Stored[Any]], statuses: Sequence[str]) -> str | None:
    fleet = _find(rows, FLEET, FLEET_KEY)
    if fleet is None or fleet.result.status not in statuses:
        return None
    return str(fleet.result.status)


@dataclass(frozen=True)
class FoundResults:
    """What a results query found: the model, its windows (newest first) and the names of its
    versions. The CLI's words and the JSON document are both drawn from it."""

    model: str
    windows: list[FoundWindow]
    versions: dict[int, str]


def find_results(
    engine: Engine,
    model: str,
    *,
    window: str = LATEST,
    since: datetime | None = None,
    scope: str | None = None,
    limit: int = DEFAULT_RESULT_WINDOWS,
) -> FoundResults:
    """The stored results of the model's latest window, of the window that holds ``window``
    (an ISO time), or of the windows starting at or after ``since`` (newest first, at most
    ``limit``), for every scope, every scope of a kind (``site``) or one (``site:NAME``)."""
    moment = parse_window(window)
    wanted = parse_scope(scope)
    if moment is not None and since is not None:
        raise invalid("since", "give window or since, not both")
    check_limit(limit, MAX_RESULT_WINDOWS)
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        if moment is not None:
            start = readout.window_holding(conn, found.id, moment)
            if start is None:
                raise NotFound(
                    f"no analysed window of {found.name} holds {moment.isoformat()}",
                    code="no_window",
                )
            starts = [start]
        elif since is not None:
            summaries = readout.window_summaries(conn, found.id, limit=limit, since=since)
            starts = [s.window_start for s in summaries]
        else:
            latest = results.latest_window_start(conn, found.id)
            starts = [] if latest is None else [latest]
        versions = models.version_names(conn)
        stored = [results.window(conn, found.id, start) for start in starts]
    return FoundResults(
        found.name, [_found_window(w, wanted) for w in stored if w is not None], versions
    )


def _found_window(stored: WindowResults, wanted: tuple[str, str | None] | None) -> FoundWindow:
    kinds: list[Sequence[Stored[Any]]] = [
        stored.drift,
        stored.quality,
        stored.performance,
        stored.estimation,
        stored.multivariate,
    ]
    # Each kind's rows by scope, once: a window of a thousand nodes has thousands of scopes.
    drift, quality, performance, estimation, multivariate = (_by_scope(rows) for rows in kinds)
    keys = {key for rows in (drift, quality, performance, estimation, multivariate) for key in rows}
    if wanted is not None:
        kind, name = wanted
        keys = {k for k in keys if k[0] == kind and (name is None or k[1] == name)}
    ordered = sorted(keys, key=lambda k: (_SCOPE_ORDER.get(k[0], len(_SCOPE_ORDER)), k[1]))
    scopes = []
    for key in ordered:
        d, q = drift.get(key), quality.get(key)
        scopes.append(
            ScopeResults(
                scope_kind=key[0],
                scope_key=key[1],
                drift=d,
                drifted_features=[] if d is None else stored.drifted_features(*key),
                drift_features=[] if d is None else stored.drift_features.get(d.id, []),
                quality=q,
                quality_issues=[] if q is None else stored.quality_issues(*key),
                quality_features=[] if q is None else stored.quality_features.get(q.id, []),
                performance=performance.get(key),
                estimation=estimation.get(key),
                multivariate=multivariate.get(key),
            )
        )
    return FoundWindow(stored, scopes)


def _by_scope(rows: Sequence[Stored[Any]]) -> dict[tuple[str, str], Stored[Any]]:
    return {(row.scope_kind, row.scope_key): row for row in rows}


def results_document(
    engine: Engine,
    model: str,
    *,
    window: str = LATEST,
    since: datetime | None = None,
    scope: str | None = None,
    limit: int = DEFAULT_RESULT_WINDOWS,
) -> dict[str, Any]:
    """The verdicts of the model's latest window, of the window that holds ``window`` (an
    ISO time), or of the windows starting at or after ``since`` (newest first, at most
    ``limit``), for every scope or one: what `edge-monitor results --json` prints and
    ``GET /v1/models/{model}/results`` answers."""
    found = find_results(engine, model, window=window, since=since, scope=scope, limit=limit)
    return results_of(found)


def results_of(found: FoundResults) -> dict[str, Any]:
    """The JSON document of what a results query found."""
    return {
        "model": found.model,
        "windows": [_window(w, found.versions) for w in found.windows],
    }


def _window(found: FoundWindow, versions: dict[int, str]) -> dict[str, Any]:
    return {
        "window_start": _plain(found.window_start),
        "window_end": _plain(found.window_end),
        "scopes": [_scope(s, versions) for s in found.scopes],
    }


def scope_name(scope_kind: str, scope_key: str) -> str:
    """A scope as the CLI and the API name it: ``fleet`` or ``KIND:NAME``."""
    return FLEET if scope_kind == FLEET else f"{scope_kind}:{scope_key}"


def _scope(s: ScopeResults, versions: dict[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"scope": s.name, "scope_kind": s.scope_kind, "scope_key": s.scope_key}
    out["drift"] = (
        None
        if s.drift is None
        else {
            **_row(s.drift, versions),
            "drifted_features": s.drifted_features,
            "features": [_feature(f) for f in s.drift_features],
        }
    )
    out["quality"] = (
        None
        if s.quality is None
        else {
            **_row(s.quality, versions),
            "issues": s.quality_issues,
            "features": [_feature(f) for f in s.quality_features],
        }
    )
    out["performance"] = None if s.performance is None else _row(s.performance, versions)
    out["estimation"] = None if s.estimation is None else _row(s.estimation, versions)
    out["multivariate"] = None if s.multivariate is None else _row(s.multivariate, versions)
    return out


def _find(rows: Sequence[Stored[Any]], kind: str, key: str) -> Stored[Any] | None:
    return next((r for r in rows if r.scope_kind == kind and r.scope_key == key), None)


def _row(row: Stored[Any], versions: dict[int, str]) -> dict[str, Any]:
    result = {k: v for k, v in dataclasses.asdict(row.result).items() if k not in _SCOPE_FIELDS}
    version = None if row.model_version_id is None else versions.get(row.model_version_id)
    # What the stored row says besides its result: which analysis, against what.
    context = {
        "model_version": version,
        "n_reference": row.n_reference,
        "computed_at": row.computed_at,
        "revision": row.revision,
        "n_late": row.n_late,
        "span_start": row.span_start,
        "reference": row.reference,
    }
    return _plain({**result, **context})


_SCOPE_FIELDS = ("scope_kind", "scope_key")


def _feature(row: Any) -> dict[str, Any]:
    return _plain({k: v for k, v in dataclasses.asdict(row).items() if k not in _SCOPE_FIELDS})


def _plain(value: Any) -> Any:
    """``value`` as JSON: times in ISO 8601 (UTC), and a float JSON cannot hold (an infinite
    statistic) as null."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def health_document(
    engine: Engine, offline_after: timedelta, *, now: datetime | None = None
) -> dict[str, Any]:
    """Every node's status now and the counts per status: ``GET /v1/nodes/health``."""
    states = node_states(engine, offline_after, now=now)
    counts = status_counts(states)
    return {
        "offline_after_seconds": int(offline_after.total_seconds()),
        "counts": counts,
        "nodes": [_plain(dataclasses.asdict(s)) for s in states],
    }


def status_counts(states: Sequence[NodeState]) -> dict[str, int]:
    """How many nodes have each status (every status present; labellers have none)."""
    counts = dict.fromkeys(readout.STATUSES, 0)
    for state in states:
        if state.status is not None:
            counts[state.status] += 1
    return counts


def recently_skewed(states: Sequence[NodeState], now: datetime) -> list[NodeState]:
    """The nodes whose clock was seen wrong within RECENT_SKEW of ``now``."""
    return [
        s
        for s in states
        if s.clock_skew_at is not None
        and s.clock_skew_seconds is not None
        and s.clock_skew_at >= now - RECENT_SKEW
    ]


def node_states(
    engine: Engine, offline_after: timedelta, *, now: datetime | None = None
) -> list[NodeState]:
    """Every node with its status now (online, degraded, offline, silent, revoked)."""
    now = now or utcnow()
    with engine.connect() as conn:
        return readout.node_states(conn, now - offline_after)


# --- The fleet at a glance ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """One model at a glance: its latest analysed window and what was found in it."""

    model: str
    latest: WindowSummary | None = None
    #: The fleet's drifted features in the latest window.
    fleet_drifted: list[str] = field(default_factory=list)
    #: Per scope kind, the drifting scopes and their drifted features.
    drifting: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    #: Per drifted feature, how many scopes of each kind found it drifted.
    features_where: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Scopes whose drift had too little data for a verdict.
    insufficient: int = 0
    quality_issues: list[str] = field(default_factory=list)
    #: The fleet's performance in the latest window that had labels.
    performance: Stored[Any] | None = None
    #: The latest window's fleet estimate (None: not estimated, e.g. analysed before
    #: estimation existed), and the scopes whose estimate is not trusted.
    estimate: Stored[EstimationScope] | None = None
    untrusted: list[tuple[str, str]] = field(default_factory=list)
    #: The latest window's scopes with multivariate drift, and whether any scope was judged.
    multivariate_drifting: list[tuple[str, str]] = field(default_factory=list)
    multivariate_judged: bool = False


@dataclass(frozen=True)
class FleetStatus:
    """The fleet at a glance: its nodes' statuses, clock skews seen lately, and each model."""

    nodes: list[NodeState]
    counts: dict[str, int]
    skewed: list[NodeState]
    models: list[ModelStatus]


def fleet_status(
    engine: Engine,
    offline_after: timedelta,
    *,
    model: str | None = None,
    now: datetime | None = None,
) -> FleetStatus:
    """Nodes by status, recent clock skews, and per model (or the one named) its latest
    window's drift, quality and the latest labelled performance."""
    now = now or utcnow()
    states = node_states(engine, offline_after, now=now)
    counts = status_counts(states)
    skewed = recently_skewed(states, now)
    with engine.connect() as conn:
        chosen = [models.get_model(conn, model)] if model else models.list_models(conn)
        statuses = [_model_status(conn, m) for m in chosen]
    return FleetStatus(states, counts, skewed, statuses)


def _model_status(conn: Connection, model: models.Model) -> ModelStatus:
    summaries = readout.window_summaries(conn, model.id, limit=1)
    performance = readout.latest_labelled_performance(conn, model.id)
    if not summaries:
        return ModelStatus(model.name, performance=performance)
    latest = summaries[0]
    stored = results.window(conn, model.id, latest.window_start)
    if stored is None:  # removed between the two reads (retention)
        return ModelStatus(model.name, performance=performance)
    drifting: dict[str, list[tuple[str, list[str]]]] = {}
    where: dict[str, dict[str, int]] = {}
    for kind in (SITE, GROUP, NODE):
        found = [
            (row.scope_key, stored.drifted_features(kind, row.scope_key))
            for row in sorted(stored.drifting_scopes(kind), key=lambda r: r.scope_key)
        ]
        if found:
            drifting[kind] = found
    for row in stored.drift:
        if not row.result.drifted:
            continue
        for feature in stored.drifted_features(row.scope_kind, row.scope_key):
            counts = where.setdefault(feature, dict.fromkeys(SCOPE_KINDS, 0))
            counts[row.scope_kind] += 1
    return ModelStatus(
        model.name,
        latest=latest,
        fleet_drifted=stored.drifted_features() if _fleet_drifted(stored) else [],
        drifting=drifting,
        features_where=dict(sorted(where.items())),
        insufficient=sum(1 for row in stored.drift if row.result.drifted is None),
        quality_issues=stored.quality_issues(),
        performance=performance,
        estimate=_find(stored.estimation, FLEET, FLEET_KEY),
        untrusted=_ordered(r for r in stored.estimation if r.result.trusted is False),
        multivariate_drifting=_ordered(r for r in stored.multivariate if r.result.drifted),
        multivariate_judged=any(r.result.drifted is not None for r in stored.multivariate),
    )


def _ordered(rows: Iterable[Stored[Any]]) -> list[tuple[str, str]]:
    """Scopes as (kind, key), fleet first, then sites, groups and nodes by name."""
    keys = [(r.scope_kind, r.scope_key) for r in rows]
    return sorted(keys, key=lambda k: (_SCOPE_ORDER.get(k[0], len(_SCOPE_ORDER)), k[1]))


def _fleet_drifted(stored: WindowResults) -> bool:
    try:
        fleet = stored.drift_of()
    except KeyError:
        return False
    return bool(fleet.result.drifted)
