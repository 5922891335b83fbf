"""The window-analysis job: drift, data quality, performance (realised, and estimated without
labels) and multivariate drift of every closed window, for the fleet, each site, each group and
each node; once, whatever runs it.

A window ``[start, end)`` of a model is analysed when it has closed and its grace period has
passed. The unit of work is (model, window), claimed through a lease, so that several workers
split the windows between them and a crashed worker's window is taken over when its lease
expires. Each window goes claim -> load -> analyse -> save -> complete; results and the lease's
completion commit in one transaction, so a worker that lost its lease stores nothing. A long
analysis renews its lease as it goes. Late labels re-open only the performance part of their
windows (realised, and the estimate's check against them); late records re-open the whole
window, as its next revision (``monitor.jobs.late``). A scope too small for a drift verdict
in one window is judged on consecutive windows pooled (``monitor.jobs.pooling``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from monitor.analysis import AnalysisPolicy, analyse_drift, analyse_performance, analyse_quality
from monitor.analysis.estimation import estimate_performance
from monitor.analysis.multivariate import analyse_multivariate
from monitor.analysis.scopes import ScopeSet
from monitor.analysis.trust import PastWindow
from monitor.jobs.alerts import evaluate_window
from monitor.jobs.baselines import BaselineCache, with_baselines
from monitor.jobs.estimation import evidence_of, labelled_history
from monitor.jobs.late import IN_FLIGHT, LateWindow, late_windows, windows_reached
from monitor.jobs.owner import process_owner
from monitor.jobs.pooling import Pooled, pool, small_scopes
from monitor.jobs.reference import Reference, ReferenceCache
from monitor.jobs.windows import Window, cut_row_windows, model_windows, schedule_of
from monitor.schema import (
    DRIFT,
    ESTIMATION,
    FLEET,
    FLEET_KEY,
    MULTIVARIATE,
    NO_REFERENCE,
    NODE,
    OK,
    PERFORMANCE,
    QUALITY,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    ResultTable,
    plain_values,
)
from monitor.storage import leases, policies, registry, results
from monitor.storage.arrivals import received_since
from monitor.storage.engine import begin_write
from monitor.storage.labels import labelled_since, window_labels
from monitor.storage.models import Model, list_models
from monitor.storage.nodes import list_nodes
from monitor.storage.policies import Rows
from monitor.storage.results import KindResults
from monitor.storage.types import utcnow
from monitor.storage.windows import first_record_time, has_records, load_window

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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
    #: Every verdict's policy: drift (minimum rows, FDR), quality thresholds, minimum labels.
    policy: AnalysisPolicy = field(default_factory=AnalysisPolicy)
    lease: timedelta = timedelta(minutes=10)
    #: Records that arrive after their window was analysed re-open it while the window ended
    #: less than this long ago (``monitor.jobs.late``); zero: never.
    late_horizon: timedelta = timedelta(hours=720)
    #: A scope too small for a drift verdict in one window is judged on up to this many
    #: consecutive windows pooled, this one included (``monitor.jobs.pooling``); 1: never.
    pool_windows: int = 12


@dataclass(frozen=True, eq=False)
class WindowData:
    """What one window's analysis needs, loaded in one read transaction."""

    frame: pd.DataFrame
    reference: Reference | None
    #: Scope keys per frame row: site, group and node name.
    scopes: dict[str, Any]
    #: Labels by row key.
    labels: dict[int, Any]
    #: The window's rows and its small scopes' earlier rows, for drift (None: none pooled).
    pooled: Pooled | None = None
    #: Per scope, its latest earlier window whose estimate labels could check.
    history: Mapping[tuple[str, str], Sequence[PastWindow]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class WindowAnalysis:
    """One window's results by kind, and the reference they were measured against."""

    results: Mapping[str, KindResults]
    model_version_id: int | None
    n_reference: int | None


@dataclass(frozen=True)
class PeriodAnalysis:
    """What a re-analysis of a period did: the windows analysed (their results now the stored
    ones), and those it gave up on because another worker kept holding them."""

    analysed: list[Window]
    busy: list[Window]


@dataclass
class Worker:
    """One analysing process: its identity for leases, its clock and its cache of references."""

    engine: Engine
    config: AnalysisConfig = field(default_factory=AnalysisConfig)
    owner: str = field(default_factory=process_owner)
    references: ReferenceCache = field(default_factory=ReferenceCache)
    #: Per-node (or per-site) baseline profiles of models that judge scopes by their own.
    baselines: BaselineCache = field(default_factory=BaselineCache)
    clock: Clock = utcnow
    #: Labels received before this moment have been looked at.
    label_watermark: datetime | None = None
    #: Batches received before this moment (wall clock) have been looked at for late records,
    #: and the ids of those received shortly before it (they are read again, being in flight).
    late_watermark: datetime | None = None
    late_seen: set[int] = field(default_factory=set)

    def due_windows(self, now: datetime | None = None) -> list[tuple[Model, Window]]:
        """Closed windows with data that nobody has completed, oldest first, by each model's
        window policy (its row windows that are due are cut first)."""
        now = now or self.clock()
        grace, default = self.config.grace, self.config.window
        due = []
        with self.engine.connect() as conn:
            listed = list_models(conn)
        for model in listed:
            schedule = schedule_of(model.window_policy)
            spans = schedule.spans(default)
            if any(isinstance(span.policy, Rows) for span in spans):
                with begin_write(self.engine) as conn:
                    cut_row_windows(conn, model.id, schedule, default, now, grace)
            with self.engine.connect() as conn:
                earliest = first_record_time(conn, model.id)
                if earliest is None:
                    continue
                earliest = max(earliest, now - self.config.lookback)
                done = leases.completed_keys(conn, f"analysis:{model.id}:")
                for window in model_windows(conn, model.id, spans, earliest, now):
                    key = analysis_key(model.id, window)
                    if (
                        window.end + grace <= now
                        and key not in done
                        and has_records(conn, model.id, window.start, window.end)
                    ):
                        due.append((model, window))
        return sorted(due, key=lambda item: (item[1].start, item[0].id))

    def windows_in(
        self, conn: Connection, model: Model, start: datetime, end: datetime
    ) -> list[Window]:
        """The model's windows that overlap ``[start, end)``, by its window policy, oldest
        first (closed or not; of a rows policy, those cut and those due to be cut now)."""
        spans = schedule_of(model.window_policy).spans(self.config.window)
        return model_windows(
            conn, model.id, spans, start, end, now=self.clock(), grace=self.config.grace
        )

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

    def analyse_period(
        self,
        model: Model,
        start: datetime,
        end: datetime,
        progress: Callable[[int, int], None] | None = None,
        pause: Callable[[float], None] = time.sleep,
    ) -> PeriodAnalysis:
        """(Re)analyse every window of ``model`` in ``[start, end)`` that holds records, even
        one analysed before: its results are replaced (imported history, a changed reference).

        Each window goes through ``analyse`` under its usual lease, reopened first if it was
        completed, so a running worker never analyses the same window at the same moment: a
        window a worker holds is waited for (it finishes, or its lease expires), then analysed
        again here. A window still held after twice the lease is reported busy."""
        with self.engine.connect() as conn:
            windows = [
                window
                for window in self.windows_in(conn, model, start, end)
                if has_records(conn, model.id, window.start, window.end)
            ]
        analysed: list[Window] = []
        busy: list[Window] = []
        for index, window in enumerate(windows, 1):
            key = analysis_key(model.id, window)
            give_up = time.monotonic() + 2 * self.config.lease.total_seconds()
            while True:
                with begin_write(self.engine) as conn:
                    leases.reopen(conn, key, self.clock())
                    held = leases.held(conn, key, self.clock())
                if not held and self.analyse(model, window):
                    analysed.append(window)
                    break
                if time.monotonic() > give_up:
                    busy.append(window)
                    break
                pause(0.2)
            if progress is not None:
                progress(index, len(windows))
        return PeriodAnalysis(analysed, busy)

    def analyse(self, model: Model, window: Window) -> bool:
        """Analyse one window if this worker gets its lease; True when its results landed."""
        return self._analyse(model, window, analysis_key(model.id, window))

    def _analyse(
        self, model: Model, window: Window, key: str, late: LateWindow | None = None
    ) -> bool:
        """Claim ``key``, then load, analyse and store the window; ``late``: a re-analysis after
        late records, which stores the next revision (and nothing if no row arrived after all)."""
        lease = _Lease(self.engine, key, self.owner, self.config.lease, self.clock)
        if not lease.claim():
            return False
        # The wall clock, as the collector stamps received_at: a batch received after this
        # moment may be missing from these results, and re-opens the window.
        as_of = utcnow()
        data = self._load(model, window)
        revision: int | None = None
        n_late = 0
        if late is not None and late.previous is not None:
            n_late = len(data.frame) - late.previous.n_rows
            if n_late <= 0:  # batches stored while the previous analysis read the window
                with begin_write(self.engine) as conn:
                    leases.complete(conn, key, self.owner, self.clock())
                return False
            revision = late.revision
        lease.keep()
        analysis = analyse_window(data, self.config.policy, lease.keep)
        analysis = with_baselines(
            self.engine,
            model.id,
            window.start,
            data,
            analysis,
            self.config.policy.drift,
            self.baselines,
        )
        with begin_write(self.engine) as conn:
            if not leases.complete(conn, key, self.owner, self.clock()):
                log.warning("lost the lease on %s; another worker stores it", key)
                conn.rollback()
                return False
            results.save_window(
                conn,
                model.id,
                window.start,
                window.end,
                analysis.results,
                model_version_id=analysis.model_version_id,
                n_reference=analysis.n_reference,
                revision=revision,
                n_late=n_late,
                computed_at=as_of,
            )
            # In the same transaction: alerts and their outbox rows commit with the results.
            evaluate_window(
                conn,
                model.id,
                window.start,
                now=self.clock(),
                min_labels=self.config.policy.min_labels,
                found=analysis.results,
                window_end=window.end,
                model_version_id=analysis.model_version_id,
            )
        _log_window(model.name, window, analysis, revision, n_late)
        return True

    def reopen_late(
        self, now: datetime | None = None, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Analyse again every window (ended within the late horizon) whose records arrived
        after its analysis, and analyse windows never analysed that records reached; returns
        how many windows got new results."""
        now = now or self.clock()
        horizon = self.config.late_horizon
        if horizon <= timedelta(0):
            return 0
        wall = utcnow()  # received_at is the collector's wall clock
        since = wall - horizon if self.late_watermark is None else self.late_watermark - IN_FLIGHT
        work: list[tuple[Model, LateWindow]] = []
        with self.engine.connect() as conn:
            arrivals = received_since(conn, since, reaching=now - horizon)
            models = {m.id: m for m in list_models(conn)}
            for model_id in sorted({a.model_id for a in arrivals}):
                model = models.get(model_id)
                mine = [a for a in arrivals if a.model_id == model_id]
                reached = windows_reached(mine)
                if model is None or reached is None:
                    continue
                windows = [
                    w
                    for w in self.windows_in(conn, model, reached[0], reached[1] + _EPSILON)
                    if w.end + self.config.grace <= now and w.end > now - horizon
                ]
                analysed = {
                    a.window_start: a for a in results.analysed_since(conn, model_id, now - horizon)
                }
                done = leases.completed_keys(conn, f"late:{model_id}:")
                # Never-analysed windows: only for arrivals this worker has just seen arrive.
                fresh = (
                    set()
                    if self.late_watermark is None
                    else {a.batch_id for a in mine} - self.late_seen
                )
                for late in late_windows(model_id, mine, windows, analysed, fresh):
                    if late.key not in done:
                        work.append((model, late))
        reanalysed = 0
        for index, (model, late) in enumerate(work, 1):
            key = late.key if late.previous is not None else analysis_key(model.id, late.window)
            if self._in_flight_only(late) and not self._grew(model, late):
                pass  # the batches were in the results after all: no lease, nothing stored
            elif self._analyse(model, late.window, key, late):
                reanalysed += 1
            if progress is not None:
                progress(index, len(work))
        self.late_watermark = wall
        self.late_seen = {a.batch_id for a in arrivals if a.received_at >= wall - IN_FLIGHT}
        return reanalysed

    def refresh_performance(self, now: datetime | None = None) -> int:
        """Recompute the performance of analysed windows whose records got labels since."""
        now = now or self.clock()
        since = self.label_watermark or now - self.config.label_lookback
        refreshed = 0
        with self.engine.connect() as conn:
            touched = _windows_with_new_labels(conn, since, self.config.window)
            models = {m.id: m for m in list_models(conn)}
        for (model_id, window), newest in sorted(touched.items(), key=lambda kv: kv[0][1]):
            if window.end + self.config.grace > now or model_id not in models:
                continue  # not analysed yet: the window's own analysis will see these labels
            key = f"performance:{model_id}:{window.key}:{newest.isoformat()}"
            with self.engine.connect() as conn:
                done = analysis_key(model_id, window) in leases.completed_keys(
                    conn, analysis_key(model_id, window)
                )
            lease = _Lease(self.engine, key, self.owner, self.config.lease, self.clock)
            if not done or not lease.claim():
                continue
            data = self._load(models[model_id], window, pooled=False)
            performance = _performance(data, self.config.policy)
            refreshed_kinds = {} if performance is None else {PERFORMANCE: performance}
            # The estimate is checked against the labels too: its trust verdict may change.
            with self.engine.connect() as conn:
                stored = results.window(conn, model_id, window.start)
            estimation = _estimation(data, self.config.policy, None, _stored_drift(stored))
            if estimation is not None and stored is not None and stored.estimation:
                refreshed_kinds[ESTIMATION] = estimation
            with begin_write(self.engine) as conn:
                if not refreshed_kinds or not leases.complete(conn, key, self.owner, self.clock()):
                    conn.rollback()
                    continue
                results.save_window(
                    conn,
                    model_id,
                    window.start,
                    window.end,
                    refreshed_kinds,
                    model_version_id=data.reference.version_id if data.reference else None,
                    n_reference=data.reference.profile.n_rows if data.reference else None,
                )
                evaluate_window(
                    conn,
                    model_id,
                    window.start,
                    now=now,
                    min_labels=self.config.policy.min_labels,
                    found=refreshed_kinds,
                    window_end=window.end,
                    model_version_id=data.reference.version_id if data.reference else None,
                )
            refreshed += 1
        self.label_watermark = now
        return refreshed

    @staticmethod
    def _in_flight_only(late: LateWindow) -> bool:
        """Whether the window's newest batch was received before its results were read (within
        ``IN_FLIGHT``): it may well be in them."""
        return late.previous is not None and late.newest <= late.previous.computed_at

    def _grew(self, model: Model, late: LateWindow) -> bool:
        """Whether the window now holds more rows than its results were computed on."""
        assert late.previous is not None
        with self.engine.connect() as conn:
            frame = load_window(conn, model.id, late.window.start, late.window.end)
        return len(frame) > late.previous.n_rows

    def _load(self, model: Model, window: Window, *, pooled: bool = True) -> WindowData:
        """The window's rows, reference, scope keys and labels; with ``pooled``, the earlier
        rows its small scopes need for a drift verdict (only drift uses them)."""
        with self.engine.connect() as conn:
            frame = load_window(conn, model.id, window.start, window.end)
            reference = self._reference(conn, model.id, frame)
            scopes = _scopes(conn, frame)
            found = None
            min_rows = self.config.policy.drift.min_rows
            if (
                pooled
                and reference is not None
                and self.config.pool_windows > 1
                and small_scopes(scopes, min_rows)
            ):
                found = pool(
                    conn,
                    model.id,
                    frame,
                    scopes,
                    self._preceding(conn, model, window, self.config.pool_windows - 1),
                    list_nodes(conn),
                    min_rows,
                )
            if found is not None:
                # The window's rows are the pooled frame's first rows: one copy in memory.
                frame = found.frame.iloc[: found.n_window]
            history = (
                labelled_history(
                    conn,
                    model.id,
                    since=window.start - self.config.label_lookback,
                    before=window.start,
                    policy=self.config.policy.estimation,
                )
                if reference is not None
                else {}
            )
            return WindowData(
                frame=frame,
                reference=reference,
                scopes=scopes,
                labels=window_labels(conn, model.id, window.start, window.end),
                pooled=found,
                history=history,
            )

    def _preceding(
        self, conn: Connection, model: Model, window: Window, count: int
    ) -> list[Window]:
        """Up to ``count`` of the model's windows before ``window``, oldest first, by its
        window policy (looked for further back while windows are missing and records exist)."""
        if count < 1:
            return []
        earliest = first_record_time(conn, model.id)
        if earliest is None or earliest >= window.start:
            return []
        span = max(window.end - window.start, timedelta(seconds=1)) * count
        while True:
            start = max(window.start - span, earliest)
            listed = self.windows_in(conn, model, start, window.start)
            found = [w for w in listed if w.end <= window.start]
            if len(found) >= count or start <= earliest:
                return found[-count:]
            span *= 2

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


def analyse_window(
    data: WindowData, policy: AnalysisPolicy, between: Callable[[], None] = lambda: None
) -> WindowAnalysis:
    """Drift, quality and performance of one loaded window; ``between`` runs between the
    kinds (the worker renews its lease there)."""
    reference = data.reference
    found: dict[str, KindResults] = {}
    # Built once: every kind cuts the window the same way.
    scopes = ScopeSet.build(len(data.frame), data.scopes)
    if reference is not None and len(data.frame):
        pooled = data.pooled
        if pooled is None:
            drift = analyse_drift(reference.profile, data.frame, scopes, policy=policy.drift)
            found[DRIFT] = KindResults(drift.scope_table, drift.feature_table)
        else:
            # One analysis, so that pooled verdicts share the window's false-discovery family.
            pooled_scopes = ScopeSet.build(
                len(pooled.frame), pooled.scopes, in_fleet=pooled.in_fleet
            )
            drift = analyse_drift(
                reference.profile, pooled.frame, pooled_scopes, policy=policy.drift
            )
            found[DRIFT] = KindResults(
                drift.scope_table, drift.feature_table, span_starts=pooled.span_starts
            )
        between()
        quality = analyse_quality(reference.profile, data.frame, scopes, thresholds=policy.quality)
        found[QUALITY] = KindResults(quality.scope_table, quality.feature_table)
        between()
        multivariate = analyse_multivariate(
            reference.reconstruction, data.frame, scopes, policy=policy.drift
        )
        found[MULTIVARIATE] = KindResults(multivariate.scope_table)
        between()
    else:
        found[DRIFT] = KindResults(_no_reference(len(data.frame)))
    performance = _performance(data, policy, scopes)
    if performance is not None:
        found[PERFORMANCE] = performance
    estimation = _estimation(data, policy, scopes, found.get(DRIFT))
    if estimation is not None:
        found[ESTIMATION] = estimation
    return WindowAnalysis(
        found,
        reference.version_id if reference else None,
        reference.profile.n_rows if reference else None,
    )


def _performance(
    data: WindowData, policy: AnalysisPolicy, scopes: ScopeSet | None = None
) -> KindResults | None:
    if not len(data.frame):
        return None
    if data.reference is not None:
        task, classes, positive = data.reference.task()
    else:
        task, classes, positive = "classification", None, None
    performance = analyse_performance(
        data.frame,
        data.labels,
        task,  # type: ignore[arg-type]  # a DataSchema holds only valid tasks
        classes=classes,
        positive_class=positive,
        scopes=data.scopes if scopes is None else scopes,
        min_labels=policy.min_labels,
    )
    return KindResults(performance.scope_table)


def _estimation(
    data: WindowData,
    policy: AnalysisPolicy,
    scopes: ScopeSet | None,
    drift: KindResults | None,
) -> KindResults | None:
    """The window's performance estimated without labels, checked against whatever labels it
    has, judged with its drift results and each scope's labelled history (None: no reference
    to calibrate on, or no rows)."""
    if data.reference is None or not len(data.frame):
        return None
    estimated = estimate_performance(
        data.reference.estimator,
        data.frame,
        data.scopes if scopes is None else scopes,
        labels=data.labels,
        evidence=evidence_of(drift, data.history),
        policy=policy.estimation,
    )
    return KindResults(estimated.scope_table)


def _stored_drift(stored: results.WindowResults | None) -> KindResults | None:
    """A window's stored drift results as analysis hands them over (the trust evidence of a
    re-estimate after late labels)."""
    if stored is None or not stored.drift:
        return None
    scopes = ResultTable.from_rows(DriftScope, [row.result for row in stored.drift])
    # Stored feature rows carry their scope row's kind and key.
    features = [f for rows in stored.drift_features.values() for f in rows]
    return KindResults(scopes, ResultTable.from_rows(DriftFeature, features))


def _no_reference(n_rows: int) -> ResultTable[DriftScope]:
    """The one drift row of a window without reference data: the fleet, no verdict."""
    row = DriftScope(FLEET, FLEET_KEY, NO_REFERENCE, n_rows, 0, 0, None, None, None, None)
    return ResultTable.from_rows(DriftScope, [row])


def _log_window(
    model: str,
    window: Window,
    analysis: WindowAnalysis,
    revision: int | None = None,
    n_late: int = 0,
) -> None:
    """One INFO line per analysed window with its drift verdicts: where it drifted and on
        which features, or "no drift"; the same facts as fields for JSON logs. A re-analysis after
        late records says so: "revision 2, 1,234 late rows"; multivariate drift and an estimate that
    is not trusted are said after the drift verdicts, only when found."""
    drift = analysis.results[DRIFT]
    scopes = drift.scopes.rows()
    fleet = scopes[0]
    fields: dict[str, Any] = {
        "model": model,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "records": fleet.n_rows,
    }
    head = f"{model} window {window.key}: {fleet.n_rows} records"
    if revision is not None:
        fields |= {"revision": revision, "late_rows": n_late}
        head += f" (revision {revision}, {n_late:,} late rows)"
    if fleet.status == NO_REFERENCE:
        log.info("%s, no reference data: no drift verdict", head, extra=fields)
        return
    drifting = [s for s in scopes if s.drifted]
    nodes = [s for s in scopes if s.scope_kind == NODE]
    drifting_nodes = [s.scope_key for s in drifting if s.scope_kind == NODE]
    named = _drifted_features(drift)
    shown = {
        f"{s.scope_kind}{' ' + s.scope_key if s.scope_key else ''}": named.get(
            (s.scope_kind, s.scope_key), []
        )
        for s in drifting
        if s.scope_kind != NODE
    }
    fields |= {"drifting": shown, "drifting_nodes": drifting_nodes, "nodes": len(nodes)}
    # What no single feature shows, and an estimate that cannot be trusted: said only when
    # found, after the drift verdicts.
    tail, more = _findings(analysis.results)
    fields |= more
    if drifting:
        where = "; ".join(f"{scope} on {', '.join(features)}" for scope, features in shown.items())
        log.info(
            "%s; drift at %s; %d of %d node(s) drifting%s",
            head,
            where or "no fleet, site or group",
            len(drifting_nodes),
            len(nodes),
            tail,
            extra=fields,
        )
    elif fleet.drifted is None:
        log.info("%s, no drift verdict (%s)%s", head, fleet.status, tail, extra=fields)
    else:
        log.info("%s, no drift%s", head, tail, extra=fields)


def _findings(found: Mapping[str, KindResults]) -> tuple[str, dict[str, Any]]:
    """The log line's tail: where multivariate drift was found (fleet, sites, groups by name,
    nodes counted), and the fleet's estimate when it is not trusted; and the same as fields."""
    parts: list[str] = []
    fields: dict[str, Any] = {}
    multivariate = found.get(MULTIVARIATE)
    if multivariate is not None:
        rows: list[MultivariateScope] = multivariate.scopes.rows()
        flagged = [r for r in rows if r.drifted]
        if flagged:
            named = [
                f"{r.scope_kind}{' ' + r.scope_key if r.scope_key else ''}"
                for r in flagged
                if r.scope_kind != NODE
            ]
            n_nodes = sum(r.scope_kind == NODE for r in flagged)
            where = ", ".join(named) or "no fleet, site or group"
            parts.append(f"multivariate drift at {where} ({n_nodes} node(s))")
            fields["multivariate_drifting"] = named
            fields["multivariate_drifting_nodes"] = n_nodes
    estimation = found.get(ESTIMATION)
    if estimation is not None:
        estimates: list[EstimationScope] = estimation.scopes.rows()
        fleet = estimates[0] if estimates else None
        untrusted = [e for e in estimates if e.trusted is False]
        if fleet is not None and fleet.status == OK and fleet.accuracy is not None:
            fields["estimated_accuracy"] = fleet.accuracy
            fields["estimate_trusted"] = fleet.trusted
            if fleet.trusted is False:
                parts.append(f"estimated accuracy {fleet.accuracy:.2f} {fleet.trust_reason}")
        if untrusted:
            fields["untrusted_estimates"] = len(untrusted)
            if fleet is None or fleet.trusted is not False:
                parts.append(f"estimate not trusted at {len(untrusted)} scope(s)")
    return "".join(f"; {part}" for part in parts), fields


def _drifted_features(drift: KindResults) -> dict[tuple[str, str], list[str]]:
    """The drifted input features of each (scope kind, scope key)."""
    named: dict[tuple[str, str], list[str]] = {}
    if drift.features is None:
        return named
    columns = {name: plain_values(values) for name, values in drift.features.columns.items()}
    for kind, key, name, role, drifted in zip(
        columns["scope_kind"],
        columns["scope_key"],
        columns["feature"],
        columns["role"],
        columns["drifted"],
        strict=True,
    ):
        if drifted and role == "feature":
            named.setdefault((kind, key), []).append(name)
    return named


class _Lease:
    """A worker's lease on one unit of work, renewed when a third of it has passed."""

    def __init__(self, engine: Engine, key: str, owner: str, ttl: timedelta, clock: Clock) -> None:
        self.engine, self.key, self.owner, self.ttl, self.clock = engine, key, owner, ttl, clock
        self.renewed_at: datetime | None = None

    def claim(self) -> bool:
        now = self.clock()
        with begin_write(self.engine) as conn:
            claimed = leases.claim(conn, self.key, self.owner, self.ttl, now)
        self.renewed_at = now
        return claimed

    def keep(self) -> None:
        """Renew the lease if a third of it has passed since it was last taken or renewed."""
        now = self.clock()
        if self.renewed_at is not None and now - self.renewed_at < self.ttl / 3:
            return
        with begin_write(self.engine) as conn:
            if leases.renew(conn, self.key, self.owner, self.ttl, now):
                self.renewed_at = now
            else:
                log.warning("could not renew the lease on %s (expired or taken over)", self.key)


_EPSILON = timedelta(microseconds=1)


def analysis_key(model_id: int, window: Window) -> str:
    """The lease key of a window's analysis."""
    return f"analysis:{model_id}:{window.key}"


def _windows_with_new_labels(
    conn: Connection, since: datetime, default: timedelta
) -> dict[tuple[int, Window], datetime]:
    """Windows (by each model's window policy, row windows as cut) holding records labelled at
    or after ``since``, with the newest label time."""
    # One entry per label: each labelled batch is looked at once, with its newest label.
    batches: dict[tuple[int, datetime, datetime], datetime] = {}
    for span in labelled_since(conn, since):
        batch = (span.model_id, span.min_ts, span.max_ts)
        batches[batch] = max(span.received_at, batches.get(batch, span.received_at))
    spans = {
        model_id: schedule.spans(default) for model_id, schedule in policies.schedules(conn).items()
    }
    cut: dict[int, list[Window]] = {}
    newest: dict[tuple[int, Window], datetime] = {}
    for (model_id, first, last), received_at in batches.items():
        if model_id not in spans:
            continue
        if model_id not in cut and any(isinstance(s.policy, Rows) for s in spans[model_id]):
            cut[model_id] = [w for w, _ in policies.list_row_windows(conn, model_id)]
        after_last = last + timedelta(microseconds=1)
        for window in model_windows(
            conn, model_id, spans[model_id], first, after_last, cut=cut.get(model_id, [])
        ):
            key = (model_id, window)
            if key not in newest or received_at > newest[key]:
                newest[key] = received_at
    return newest


def _scopes(conn: Connection, frame: pd.DataFrame) -> dict[str, Any]:
    """Scope keys per window row (site, group and node name), as categoricals."""
    registered = {n.id: n for n in list_nodes(conn)}
    # A lookup per node, then codes per row: never a Python call per row.
    codes, present = pd.factorize(frame["node_id"].to_numpy())
    names, sites, groups = [], [], []
    for node_id in present.tolist():
        node = registered.get(node_id)
        names.append(node.name if node else str(node_id))
        sites.append(node.site if node else None)
        groups.append(node.group_name if node else None)

    def per_row(per_node: Sequence[str | None]) -> pd.Categorical:
        node_codes, labels = pd.factorize(np.array(per_node, dtype=object))
        return pd.Categorical.from_codes(node_codes[codes], categories=labels)

    return {"site": per_row(sites), "group": per_row(groups), "node": per_row(names)}
