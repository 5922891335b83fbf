"""One scope's results over a period: its drift, quality, performance, estimated-performance and
multivariate-drift rows window by window, and its per-feature drift as a feature x window matrix
(what the dashboard's Model and Node pages draw); the scopes judged in a window, and one scope's
results of one window.

A period holds the analysed windows (those with a fleet drift row: every analysis stores one)
that end after its start and start before its end; the newest ``limit`` of them when a limit
is given, so that a long period cannot turn into an unbounded read. The rows themselves are
``storage.results``' typed rows: this module picks windows and scopes, it never judges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, select

from monitor.schema import (
    DRIFT,
    ESTIMATION,
    FEATURE,
    FLEET,
    GROUP,
    MULTIVARIATE,
    NODE,
    PERFORMANCE,
    PREDICTION_ROLE,
    QUALITY,
    SITE,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    QualityScope,
)
from monitor.storage import results
from monitor.storage.results import Stored, WindowResults
from monitor.storage.tables import drift_scopes

_EPSILON = timedelta(microseconds=1)
#: Scope kinds in the order a reader lists them: the fleet, then sites, groups, nodes.
_KIND_ORDER = {FLEET: 0, SITE: 1, GROUP: 2, NODE: 3}
#: Feature roles in the order a reader lists them: inputs, the prediction, probabilities.
_ROLE_ORDER = {FEATURE: 0, PREDICTION_ROLE: 1}


def window_starts(
    conn: Connection,
    model_id: int,
    *,
    ending_after: datetime | None = None,
    starting_before: datetime | None = None,
    limit: int | None = None,
) -> list[datetime]:
    """Starts of the model's analysed windows that end after ``ending_after`` and start before
    ``starting_before`` (None: no bound), the newest ``limit`` of them, oldest first."""
    query = select(drift_scopes.c.window_start).where(
        drift_scopes.c.model_id == model_id, drift_scopes.c.scope_kind == FLEET
    )
    if ending_after is not None:
        query = query.where(drift_scopes.c.window_end > ending_after)
    if starting_before is not None:
        query = query.where(drift_scopes.c.window_start < starting_before)
    query = query.order_by(drift_scopes.c.window_start.desc())
    if limit is not None:
        query = query.limit(limit)
    return [row[0] for row in reversed(conn.execute(query).all())]


def scope_timeline(
    conn: Connection,
    model_id: int,
    kind: str,
    scope_kind: str,
    scope_key: str,
    *,
    ending_after: datetime | None = None,
    starting_before: datetime | None = None,
    limit: int | None = None,
) -> list[Stored[Any]]:
    """One scope's rows of one result kind (drift, quality, performance, estimation,
    multivariate) in the period's windows (as ``window_starts`` picks them), oldest first. A
    window in which the scope was not judged (a node that sent nothing) has no row."""
    found = scope_timelines(
        conn,
        model_id,
        (kind,),
        scope_kind,
        scope_key,
        ending_after=ending_after,
        starting_before=starting_before,
        limit=limit,
    )
    return found[kind]


def scope_timelines(
    conn: Connection,
    model_id: int,
    kinds: Sequence[str],
    scope_kind: str,
    scope_key: str,
    *,
    ending_after: datetime | None = None,
    starting_before: datetime | None = None,
    limit: int | None = None,
) -> dict[str, list[Stored[Any]]]:
    """One scope's rows of several result kinds over the same windows, by kind (each as
    ``scope_timeline`` gives it): the period's windows are read once, then one read per kind.
    A kind with no row in the period (a window analysed before it existed) has an empty list."""
    starts = window_starts(
        conn,
        model_id,
        ending_after=ending_after,
        starting_before=starting_before,
        limit=limit,
    )
    if not starts:
        return {kind: [] for kind in kinds}
    return {
        kind: results.scopes(
            conn,
            model_id,
            kind,
            scope_kind=scope_kind,
            scope_key=scope_key,
            start=starts[0],
            end=starts[-1] + _EPSILON,
        )
        for kind in kinds
    }


def drift_timeline(
    conn: Connection, model_id: int, scope_kind: str, scope_key: str, **period: Any
) -> list[Stored[DriftScope]]:
    """One scope's drift rows over a period (``period`` as ``window_starts`` takes it)."""
    return scope_timeline(conn, model_id, DRIFT, scope_kind, scope_key, **period)


def quality_timeline(
    conn: Connection, model_id: int, scope_kind: str, scope_key: str, **period: Any
) -> list[Stored[QualityScope]]:
    """One scope's data-quality rows over a period."""
    return scope_timeline(conn, model_id, QUALITY, scope_kind, scope_key, **period)


def performance_timeline(
    conn: Connection, model_id: int, scope_kind: str, scope_key: str, **period: Any
) -> list[Stored[PerformanceScope]]:
    """One scope's performance rows over a period."""
    return scope_timeline(conn, model_id, PERFORMANCE, scope_kind, scope_key, **period)


def estimation_timeline(
    conn: Connection, model_id: int, scope_kind: str, scope_key: str, **period: Any
) -> list[Stored[EstimationScope]]:
    """One scope's estimated-performance rows over a period."""
    return scope_timeline(conn, model_id, ESTIMATION, scope_kind, scope_key, **period)


def multivariate_timeline(
    conn: Connection, model_id: int, scope_kind: str, scope_key: str, **period: Any
) -> list[Stored[MultivariateScope]]:
    """One scope's multivariate-drift rows over a period."""
    return scope_timeline(conn, model_id, MULTIVARIATE, scope_kind, scope_key, **period)


@dataclass(frozen=True)
class FeatureMatrix:
    """One scope's per-feature drift over a period: its drift rows (the matrix's windows,
    oldest first), every column judged in any of them (features by name, then the prediction,
    then class probabilities) and each (window, column)'s stored row."""

    windows: list[Stored[DriftScope]]
    features: list[str]
    cells: Mapping[tuple[datetime, str], DriftFeature]

    def cell(self, window_start: datetime, feature: str) -> DriftFeature | None:
        """The stored row of one column in one window (None: not judged there)."""
        return self.cells.get((window_start, feature))


def drift_matrix(
    conn: Connection, model_id: int, scope_kind: str, scope_key: str, **period: Any
) -> FeatureMatrix:
    """One scope's feature x window drift matrix over a period (``period`` as
    ``window_starts`` takes it)."""
    windows = drift_timeline(conn, model_id, scope_kind, scope_key, **period)
    by_scope = results.features(conn, DRIFT, [w.id for w in windows])
    cells: dict[tuple[datetime, str], DriftFeature] = {}
    roles: dict[str, str] = {}
    for window in windows:
        for row in by_scope.get(window.id, []):
            cells[(window.window_start, row.feature)] = row
            roles.setdefault(row.feature, row.role)
    features = sorted(roles, key=lambda name: (_ROLE_ORDER.get(roles[name], 2), name))
    return FeatureMatrix(windows, features, cells)


def window_scopes(conn: Connection, model_id: int, window_start: datetime) -> list[tuple[str, str]]:
    """The (scope kind, scope key) of every scope judged for drift in one window of the model:
    the fleet, then sites, groups and nodes, each kind by key."""
    order = case(
        *((drift_scopes.c.scope_kind == kind, rank) for kind, rank in _KIND_ORDER.items()),
        else_=len(_KIND_ORDER),
    )
    query = (
        select(drift_scopes.c.scope_kind, drift_scopes.c.scope_key)
        .where(
            drift_scopes.c.model_id == model_id,
            drift_scopes.c.window_start >= window_start,
            drift_scopes.c.window_start < window_start + _EPSILON,
        )
        .order_by(order, drift_scopes.c.scope_key)
    )
    return [(row.scope_kind, row.scope_key) for row in conn.execute(query)]


def scope_window(
    conn: Connection, model_id: int, window_start: datetime, scope_kind: str, scope_key: str
) -> WindowResults | None:
    """Every result of one scope in one window of the model, as a ``WindowResults`` that holds
    that scope alone (its verdict helpers answer for it as for the whole window), or None when
    the scope has no result in the window. Reads one scope's rows, not the window's thousand
    node scopes."""
    where: dict[str, Any] = {
        "scope_kind": scope_kind,
        "scope_key": scope_key,
        "start": window_start,
        "end": window_start + _EPSILON,
    }
    drift = results.drift(conn, model_id, **where)
    quality = results.quality(conn, model_id, **where)
    performance = results.performance(conn, model_id, **where)
    estimation = results.estimation(conn, model_id, **where)
    multivariate = results.multivariate(conn, model_id, **where)
    found: list[Stored[Any]] = [*drift, *quality, *performance, *estimation, *multivariate]
    if not found:
        return None
    return WindowResults(
        model_id=model_id,
        window_start=found[0].window_start,
        window_end=found[0].window_end,
        drift=drift,
        drift_features=results.features(conn, DRIFT, [r.id for r in drift]),
        quality=quality,
        quality_features=results.features(conn, QUALITY, [r.id for r in quality]),
        performance=performance,
        estimation=estimation,
        multivariate=multivariate,
    )
