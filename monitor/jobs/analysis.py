"""The window-analysis job: drift, data quality and performance of every closed window, for
the fleet, each site, each group and each node, stored as rows; once, whatever runs it.

A window ``[start, end)`` of a model is analysed when it has closed and its grace period has
passed. The unit of work is (model, window), claimed through a lease, so that several workers
split the windows between them and a crashed worker's window is taken over when its lease
expires. Results and the lease's completion commit in one transaction: a worker that lost its
lease stores nothing. Late labels re-open only the performance part of their windows.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from monitor.analysis import DriftResult, analyse_drift
from monitor.analysis.performance import analyse_performance
from monitor.analysis.quality import QualityResult, analyse_quality
from monitor.analysis.report import evidently_report
from monitor.jobs.reference import Reference, ReferenceCache
from monitor.jobs.windows import Window, closed_windows, window_of
from monitor.storage import leases, registry, results
from monitor.storage.engine import begin_write
from monitor.storage.labels import labels_for_window
from monitor.storage.models import Model, list_models
from monitor.storage.nodes import list_nodes
from monitor.storage.results import FeatureResult, Run
from monitor.storage.tables import batches, labels, records
from monitor.storage.types import utcnow
from monitor.storage.windows import load_window

log = logging.getLogger(__name__)

#: Scope kinds analysed besides the fleet, from the node registry.
SCOPE_KINDS = ("site", "group", "node")


@dataclass(frozen=True)
class AnalysisConfig:
    """How windows are cut and judged."""

    window: timedelta = timedelta(minutes=15)
    #: Wait this long after a window ends before analysing it (late records still arrive).
    grace: timedelta = timedelta(minutes=2)
    #: How far back a worker looks for windows it has not analysed (first start, downtime).
    lookback: timedelta = timedelta(days=2)
    #: How far back late labels re-open a window's performance.
    label_lookback: timedelta = timedelta(days=7)
    min_rows: int = 200
    min_labels: int = 50
    fdr: float = 0.01
    lease: timedelta = timedelta(minutes=10)
    #: Keep Evidently's snapshot of every fleet window (a few seconds per window).
    snapshots: bool = True
    snapshot_rows: int = 20_000


@dataclass
class Worker:
    """One analysing process: its identity for leases and its cache of references."""

    engine: Engine
    config: AnalysisConfig = field(default_factory=AnalysisConfig)
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    references: ReferenceCache = field(default_factory=ReferenceCache)
    #: Labels received before this moment have been looked at.
    label_watermark: datetime | None = None

    def due_windows(self, now: datetime | None = None) -> list[tuple[Model, Window]]:
        """Closed windows with data that nobody has completed, oldest first."""
        now = now or utcnow()
        due = []
        with self.engine.connect() as conn:
            for model in list_models(conn):
                earliest = first_record_time(conn, model.id)
                if earliest is None:
                    continue
                earliest = max(earliest, now - self.config.lookback)
                done = leases.completed_keys(conn, f"analysis:{model.id}:")
                for window in closed_windows(earliest, now, self.config.window, self.config.grace):
                    key = analysis_key(model.id, window)
                    if key not in done and has_records(conn, model.id, window):
                        due.append((model, window))
        return sorted(due, key=lambda item: (item[1].start, item[0].id))

    def run_due(
        self, now: datetime | None = None, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Analyse every due window this worker can claim; returns how many it analysed."""
        due = self.due_windows(now)
        analysed = 0
        for index, (model, window) in enumerate(due, 1):
            if self.analyse(model, window):
                analysed += 1
            if progress is not None:
                progress(index, len(due))
        return analysed

    def analyse(self, model: Model, window: Window) -> bool:
        """Analyse one window if this worker gets its lease; True when its results landed."""
        key = analysis_key(model.id, window)
        with begin_write(self.engine) as conn:
            if not leases.claim(conn, key, self.owner, self.config.lease):
                return False
        runs, snapshot = self._compute(model, window)
        with begin_write(self.engine) as conn:
            if not leases.complete(conn, key, self.owner):
                log.warning("lost the lease on %s; another worker stores it", key)
                conn.rollback()
                return False
            ids = results.replace_runs(
                conn, model.id, ("drift", "quality", "performance"), window.start, window.end, runs
            )
            fleet_run = ids.get(("drift", "fleet", ""))
            if snapshot is not None and fleet_run is not None:
                results.save_snapshot(conn, fleet_run, snapshot)
        log.info("analysed %s window %s: %d runs", model.name, window.key, len(runs))
        return True

    def refresh_performance(self, now: datetime | None = None) -> int:
        """Recompute the performance of analysed windows whose records got labels since."""
        now = now or utcnow()
        since = self.label_watermark or now - self.config.label_lookback
        refreshed = 0
        with self.engine.connect() as conn:
            touched = windows_with_new_labels(conn, since, self.config.window)
            models = {m.id: m for m in list_models(conn)}
        for (model_id, window), newest in sorted(touched.items(), key=lambda kv: kv[0][1]):
            if window.end + self.config.grace > now or model_id not in models:
                continue  # not analysed yet: the window's own analysis will see these labels
            key = f"performance:{model_id}:{window.key}:{newest.isoformat()}"
            with begin_write(self.engine) as conn:
                done = analysis_key(model_id, window) in leases.completed_keys(
                    conn, analysis_key(model_id, window)
                )
                if not done or not leases.claim(conn, key, self.owner, self.config.lease):
                    continue
            runs = self._performance_runs(models[model_id], window)
            with begin_write(self.engine) as conn:
                if not leases.complete(conn, key, self.owner):
                    conn.rollback()
                    continue
                results.replace_runs(
                    conn, model_id, ("performance",), window.start, window.end, runs
                )
            refreshed += 1
        self.label_watermark = now
        return refreshed

    # --- computing -------------------------------------------------------------------------

    def _compute(self, model: Model, window: Window) -> tuple[list[Run], bytes | None]:
        with self.engine.connect() as conn:
            frame = load_window(conn, model.id, window.start, window.end)
            reference = self._reference(conn, model.id, frame)
            scopes, node_ids = _scopes(conn, frame)
            truth = _labels(conn, model.id, window)
        runs: list[Run] = []
        version_id = reference.version_id if reference else None
        n_reference = reference.profile.n_rows if reference else None
        if reference is not None and len(frame):
            drift = analyse_drift(
                reference.profile,
                frame,
                scopes,
                min_rows=self.config.min_rows,
                fdr=self.config.fdr,
            )
            runs += _drift_runs(drift, node_ids, version_id, n_reference)
            quality = analyse_quality(reference.profile, frame, scopes)
            runs += _quality_runs(quality, node_ids, version_id, n_reference)
        else:
            status = "no_reference" if len(frame) else "no_data"
            runs.append(Run("drift", "fleet", "", status, len(frame), model_version_id=version_id))
        runs += self._performance(frame, truth, reference, scopes, node_ids)
        snapshot = None
        if self.config.snapshots and reference is not None and len(frame) >= self.config.min_rows:
            report = evidently_report(
                reference.frame,
                frame,
                profile=reference.profile,
                max_rows=self.config.snapshot_rows,
            )
            # Snapshots run to megabytes of JSON, which compresses about tenfold.
            snapshot = zlib.compress(report.snapshot_json().encode(), 6)
        return runs, snapshot

    def _performance_runs(self, model: Model, window: Window) -> list[Run]:
        with self.engine.connect() as conn:
            frame = load_window(conn, model.id, window.start, window.end)
            reference = self._reference(conn, model.id, frame)
            scopes, node_ids = _scopes(conn, frame)
            truth = _labels(conn, model.id, window)
        return self._performance(frame, truth, reference, scopes, node_ids)

    def _performance(
        self,
        frame: pd.DataFrame,
        truth: dict[int, Any],
        reference: Reference | None,
        scopes: dict[str, Any],
        node_ids: dict[str, int],
    ) -> list[Run]:
        card = reference.card if reference else {}
        task = card.get("task", "classification")
        if not len(frame):
            return []
        performance = analyse_performance(
            frame,
            truth,
            task,
            classes=card.get("classes"),
            positive_class=card.get("positive_class"),
            scopes=scopes,
            min_labels=self.config.min_labels,
        )
        version_id = reference.version_id if reference else None
        return [
            Run(
                "performance",
                row.scope_kind,
                row.scope_key,
                row.status,
                row.n_rows,
                node_id=node_ids.get(row.scope_key) if row.scope_kind == "node" else None,
                model_version_id=version_id,
                summary={
                    name: getattr(row, name)
                    for name in (
                        "n_labelled",
                        "label_coverage",
                        "accuracy",
                        "precision",
                        "recall",
                        "f1",
                        "roc_auc",
                        "mae",
                        "rmse",
                    )
                },
            )
            for row in performance.rows
        ]

    def _reference(self, conn: Connection, model_id: int, frame: pd.DataFrame) -> Reference | None:
        """The reference of the version most of the window ran, else of production."""
        candidates: list[registry.Version] = []
        by_id = {v.id: v for v in registry.versions(conn, model_id)}
        if len(frame):
            for version_id in frame["model_version_id"].value_counts().index:
                if int(version_id) in by_id:
                    candidates.append(by_id[int(version_id)])
        production = registry.deployment(conn, model_id).production
        if production is not None:
            candidates.append(production)
        for version in candidates:
            reference = self.references.get(conn, version)
            if reference is not None:
                return reference
        return None


def analysis_key(model_id: int, window: Window) -> str:
    """The lease key of a window's analysis."""
    return f"analysis:{model_id}:{window.key}"


def has_records(conn: Connection, model_id: int, window: Window) -> bool:
    """Whether any batch of the model overlaps the window (empty windows are not analysed;
    node health tells when nodes fall silent)."""
    query = (
        select(batches.c.id)
        .where(
            batches.c.model_id == model_id,
            batches.c.max_ts >= window.start,
            batches.c.min_ts < window.end,
        )
        .limit(1)
    )
    return conn.execute(query).first() is not None


def first_record_time(conn: Connection, model_id: int) -> datetime | None:
    """When the model's oldest stored record was made."""
    value = conn.execute(
        select(func.min(batches.c.min_ts)).where(batches.c.model_id == model_id)
    ).scalar()
    if value is None:
        return None
    return (
        batches.c.min_ts.type.process_result_value(value, conn.dialect)
        if not isinstance(value, datetime) or value.tzinfo is None
        else value
    )


def windows_with_new_labels(
    conn: Connection, since: datetime, size: timedelta
) -> dict[tuple[int, Window], datetime]:
    """Windows holding records labelled at or after ``since``, with the newest label time."""
    query = (
        select(batches.c.model_id, batches.c.min_ts, batches.c.max_ts, labels.c.received_at)
        .select_from(labels)
        .join(
            records,
            (records.c.model_id == labels.c.model_id)
            & (records.c.request_id == labels.c.request_id),
        )
        .join(batches, batches.c.id == records.c.batch_id)
        .where(labels.c.received_at >= since)
    )
    newest: dict[tuple[int, Window], datetime] = {}
    for row in conn.execute(query):
        for window in _spanned(row.min_ts, row.max_ts, size):
            key = (row.model_id, window)
            if key not in newest or row.received_at > newest[key]:
                newest[key] = row.received_at
    return newest


def _spanned(start: datetime, end: datetime, size: timedelta) -> Iterable[Window]:
    window = window_of(start, size)
    while window.start <= end:
        yield window
        window = Window(window.end, window.end + size)


def _scopes(conn: Connection, frame: pd.DataFrame) -> tuple[dict[str, Any], dict[str, int]]:
    """Scope keys per window row (site, group, node name) and node name -> id."""
    registered = {n.id: n for n in list_nodes(conn)}
    # Map each row through its node's position in the window's node list: a lookup per node,
    # then one take per scope kind, instead of a Python call per row.
    present, codes = np.unique(frame["node_id"].to_numpy(), return_inverse=True)
    names, sites, groups = [], [], []
    for node_id in present.tolist():
        node = registered.get(node_id)
        names.append(node.name if node else str(node_id))
        sites.append(node.site if node else None)
        groups.append(node.group_name if node else None)
    scopes = {
        "site": np.array(sites, dtype=object)[codes],
        "group": np.array(groups, dtype=object)[codes],
        "node": np.array(names, dtype=object)[codes],
    }
    return scopes, dict(zip(names, present.tolist(), strict=True))


def _labels(conn: Connection, model_id: int, window: Window) -> dict[int, Any]:
    return {
        key: value for key, value, _ in labels_for_window(conn, model_id, window.start, window.end)
    }


def _drift_runs(
    drift: DriftResult, node_ids: dict[str, int], version_id: int | None, n_ref: int | None
) -> list[Run]:
    features: dict[tuple[str, str], list[FeatureResult]] = defaultdict(list)
    for row in drift.rows:
        features[(row.scope_kind, row.scope_key)].append(
            FeatureResult(
                feature=row.feature,
                method=row.method,
                statistic=row.statistic,
                threshold=row.threshold,
                p_value=row.p_adjusted,
                drifted=row.drifted,
                details={
                    "role": row.role,
                    "p_raw": row.p_value,
                    "test": row.test,
                    "evidently_drifted": row.evidently_drifted,
                    "n_current": row.n_current,
                    "status": row.status,
                },
            )
        )
    runs = []
    for scope in drift.scopes:
        rows = features[(scope.scope_kind, scope.scope_key)]
        runs.append(
            Run(
                "drift",
                scope.scope_kind,
                scope.scope_key,
                scope.status,
                scope.n_rows,
                node_id=node_ids.get(scope.scope_key) if scope.scope_kind == "node" else None,
                model_version_id=version_id,
                n_reference=n_ref,
                drifted=scope.dataset_drift,
                drift_share=scope.share_drifted,
                summary={
                    "n_features": scope.n_features,
                    "n_drifted": scope.n_drifted,
                    "prediction_drifted": scope.prediction_drifted,
                    "evidently_share_drifted": scope.evidently_share_drifted,
                    "drifted_features": sorted(f.feature for f in rows if f.drifted),
                },
                features=tuple(rows),
            )
        )
    return runs


def _quality_runs(
    quality: QualityResult, node_ids: dict[str, int], version_id: int | None, n_ref: int | None
) -> list[Run]:
    by_scope: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in quality.rows:
        by_scope[(row.scope_kind, row.scope_key)].append(row)
    new_categories: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for item in quality.new_categories:
        new_categories[(item.scope_kind, item.scope_key, item.feature)][item.category] = item.count
    schema = [
        {"feature": s.feature, "issue": s.issue, "expected": s.expected, "actual": s.actual}
        for s in quality.schema
    ]
    runs = []
    for (kind, key), rows in by_scope.items():
        problems = [r.feature for r in rows if _quality_problem(r)]
        runs.append(
            Run(
                "quality",
                kind,
                key,
                "ok",
                max((r.n_rows for r in rows), default=0),
                node_id=node_ids.get(key) if kind == "node" else None,
                model_version_id=version_id,
                n_reference=n_ref,
                summary={
                    "features_with_problems": sorted(problems),
                    "max_missing_share": max((r.missing_share or 0.0 for r in rows), default=0.0),
                    "max_out_of_range_share": max(
                        (r.out_of_range_share or 0.0 for r in rows), default=0.0
                    ),
                    "schema": schema if kind == "fleet" else [],
                },
                features=tuple(
                    FeatureResult(
                        feature=r.feature,
                        details={
                            "missing_share": r.missing_share,
                            "n_invalid": r.n_invalid,
                            "out_of_range_share": r.out_of_range_share,
                            "n_new_category_rows": r.n_new_category_rows,
                            "new_categories": new_categories.get((kind, key, r.feature), {}),
                            "constant": r.constant,
                        },
                    )
                    for r in rows
                ),
            )
        )
    return runs


def _quality_problem(row: Any) -> bool:
    return bool(
        (row.missing_share or 0) > 0.05
        or (row.out_of_range_share or 0) > 0.01
        or (row.n_new_category_rows or 0) > 0
        or row.n_invalid
    )
