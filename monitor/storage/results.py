"""Analysis results: one row per (window, scope, kind) and one per feature, plus snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from monitor.storage.tables import analysis_runs, analysis_snapshots, feature_results
from monitor.storage.types import utcnow


@dataclass(frozen=True, slots=True)
class FeatureResult:
    """One feature's figures in one run."""

    feature: str
    method: str | None = None
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    drifted: bool | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One analysis of one window at one scope."""

    kind: str
    scope_kind: str
    scope_key: str
    status: str
    n_rows: int
    node_id: int | None = None
    model_version_id: int | None = None
    n_reference: int | None = None
    drifted: bool | None = None
    drift_share: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    features: tuple[FeatureResult, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredRun:
    """A run as read back, with its window and id."""

    id: int
    model_id: int
    kind: str
    window_start: datetime
    window_end: datetime
    scope_kind: str
    scope_key: str
    node_id: int | None
    model_version_id: int | None
    status: str
    n_rows: int
    n_reference: int | None
    drifted: bool | None
    drift_share: float | None
    summary: dict[str, Any]
    computed_at: datetime


def replace_runs(
    conn: Connection,
    model_id: int,
    kinds: Sequence[str],
    window_start: datetime,
    window_end: datetime,
    runs: Sequence[Run],
) -> dict[tuple[str, str, str], int]:
    """Store a window's runs of these kinds, replacing earlier ones (a recomputation after late
    labels replaces the performance runs). Returns run ids by (kind, scope_kind, scope_key)."""
    conn.execute(
        delete(analysis_runs).where(
            analysis_runs.c.model_id == model_id,
            analysis_runs.c.kind.in_(list(kinds)),
            analysis_runs.c.window_start == window_start,
        )
    )
    if not runs:
        return {}
    now = utcnow()
    rows = [
        {
            "model_id": model_id,
            "kind": run.kind,
            "window_start": window_start,
            "window_end": window_end,
            "scope_kind": run.scope_kind,
            "scope_key": run.scope_key,
            "node_id": run.node_id,
            "model_version_id": run.model_version_id,
            "status": run.status,
            "n_rows": run.n_rows,
            "n_reference": run.n_reference,
            "drifted": run.drifted,
            "drift_share": run.drift_share,
            "summary": run.summary,
            "computed_at": now,
        }
        for run in runs
    ]
    ids = (
        conn.execute(
            insert(analysis_runs).returning(analysis_runs.c.id, sort_by_parameter_order=True), rows
        )
        .scalars()
        .all()
    )
    feature_rows = [
        {
            "run_id": run_id,
            "feature": f.feature,
            "method": f.method,
            "statistic": f.statistic,
            "threshold": f.threshold,
            "p_value": f.p_value,
            "drifted": f.drifted,
            "details": f.details,
        }
        for run_id, run in zip(ids, runs, strict=True)
        for f in run.features
    ]
    if feature_rows:
        conn.execute(insert(feature_results), feature_rows)
    return {
        (run.kind, run.scope_kind, run.scope_key): run_id
        for run_id, run in zip(ids, runs, strict=True)
    }


def save_snapshot(conn: Connection, run_id: int, snapshot: bytes) -> None:
    """Keep the Evidently snapshot of a (fleet) run."""
    conn.execute(delete(analysis_snapshots).where(analysis_snapshots.c.run_id == run_id))
    conn.execute(
        insert(analysis_snapshots).values(run_id=run_id, snapshot=snapshot, created_at=utcnow())
    )


def snapshot(conn: Connection, run_id: int) -> bytes | None:
    """The Evidently snapshot kept for a run, or None."""
    blob = conn.execute(
        select(analysis_snapshots.c.snapshot).where(analysis_snapshots.c.run_id == run_id)
    ).scalar()
    return None if blob is None else bytes(blob)


def find_runs(
    conn: Connection,
    model_id: int,
    kind: str,
    *,
    scope_kind: str | None = None,
    scope_key: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[StoredRun]:
    """Runs of a model and kind, oldest window first, optionally one scope and a time range."""
    query = select(analysis_runs).where(
        analysis_runs.c.model_id == model_id, analysis_runs.c.kind == kind
    )
    if scope_kind is not None:
        query = query.where(analysis_runs.c.scope_kind == scope_kind)
    if scope_key is not None:
        query = query.where(analysis_runs.c.scope_key == scope_key)
    if start is not None:
        query = query.where(analysis_runs.c.window_start >= start)
    if end is not None:
        query = query.where(analysis_runs.c.window_start < end)
    query = query.order_by(analysis_runs.c.window_start, analysis_runs.c.id)
    return [StoredRun(**row) for row in conn.execute(query).mappings()]


def features_of(conn: Connection, run_ids: Sequence[int]) -> dict[int, list[FeatureResult]]:
    """The per-feature results of these runs."""
    found: dict[int, list[FeatureResult]] = {run_id: [] for run_id in run_ids}
    for start in range(0, len(run_ids), 5_000):
        query = (
            select(feature_results)
            .where(feature_results.c.run_id.in_(list(run_ids[start : start + 5_000])))
            .order_by(feature_results.c.run_id, feature_results.c.feature)
        )
        for row in conn.execute(query).mappings():
            values = dict(row)
            found[values.pop("run_id")].append(FeatureResult(**values))
    return found
