"""The HTML report of an analysed window: the stored verdicts, with Evidently's visuals.

The verdicts come from ``storage.results`` (what the worker decided, what the CLI prints and
the demo narrates): drift, quality, realised and estimated performance (with each estimate's
trust verdict and the evidence that decided it), and multivariate drift. Evidently's report
of the same rows is made on demand, off the analysis path, on a seeded sample; its snapshot is
kept so that the next report of the window renders at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection

from monitor.analysis.report import EvidentlyReport, ReportPage, evidently_report, render_html
from monitor.errors import NotFound, ValidationFailed
from monitor.jobs.reference import ReferenceCache
from monitor.schema import (
    FLEET,
    FLEET_KEY,
    GROUP,
    NODE,
    SITE,
    EstimationScope,
    MultivariateScope,
)
from monitor.storage import models, registry, results
from monitor.storage.engine import begin_write
from monitor.storage.nodes import list_nodes
from monitor.storage.windows import load_window

R = TypeVar("R")


@dataclass(frozen=True)
class WrittenReport:
    """Where the report went, which window and scope it shows, and the stored verdict."""

    path: Path
    window_start: datetime
    scope_kind: str
    scope_key: str
    drifted: bool | None
    drifted_features: tuple[str, ...]
    #: The scope's estimated performance and multivariate drift (None: not stored for it).
    estimation: EstimationScope | None = None
    multivariate: MultivariateScope | None = None


@dataclass(frozen=True)
class BuiltReport:
    """The report's HTML, which window and scope it shows, and the stored verdict."""

    html: str
    model: str
    window_start: datetime
    scope_kind: str
    scope_key: str
    drifted: bool | None
    drifted_features: tuple[str, ...]
    #: The scope's estimated performance and multivariate drift (None: not stored for it).
    estimation: EstimationScope | None = None
    multivariate: MultivariateScope | None = None

    @property
    def file_name(self) -> str:
        """The file name the report is written to by default."""
        return f"report-{self.model}-{self.window_start:%Y%m%dT%H%M}.html"


def write_report(
    conn: Connection,
    model_name: str,
    window: str = "latest",
    out: str | None = None,
    *,
    scope: str = FLEET,
    evidently: bool = True,
) -> WrittenReport:
    """Write the report of the model's window starting at ``window`` (ISO 8601) or of the
    latest analysed window, for one scope (``fleet``, ``site:NAME``, ``group:NAME`` or
    ``node:NAME``). ``evidently`` embeds Evidently's report of the scope's rows."""
    built = build_report(conn, model_name, window, scope=scope, evidently=evidently)
    path = Path(out or built.file_name)
    path.write_text(built.html, encoding="utf-8")
    return WrittenReport(
        path,
        built.window_start,
        built.scope_kind,
        built.scope_key,
        built.drifted,
        built.drifted_features,
        built.estimation,
        built.multivariate,
    )


def build_report(
    conn: Connection,
    model_name: str,
    window: str = "latest",
    *,
    scope: str = FLEET,
    evidently: bool = True,
    keep_snapshot: bool = True,
) -> BuiltReport:
    """The report of the model's window starting at ``window`` (ISO 8601) or of the latest
    analysed window, for one scope, as HTML (what ``write_report`` writes). ``keep_snapshot``:
    keep the Evidently snapshot made for it, so that the next report of the window and scope
    renders at once (a reader without write access, the dashboard, passes False)."""
    model = models.get_model(conn, model_name)
    scope_kind, scope_key = parse_scope(scope)
    start = results.latest_window_start(conn, model.id) if window == "latest" else _parse(window)
    stored = results.window(conn, model.id, start) if start is not None else None
    if stored is None:
        raise NotFound(
            f"no analysed window of {model_name} "
            + ("yet: is the worker running?" if window == "latest" else f"starts at {window}"),
            code="no_window",
        )
    try:
        drift = stored.drift_of(scope_kind, scope_key)
    except KeyError:
        raise NotFound(
            f"the window has no {scope_kind} {scope_key!r} (scopes are fleet, site:NAME, "
            "group:NAME, node:NAME of nodes that sent records in it)",
            code="no_scope",
        ) from None
    version = _version(conn, model.id, drift.model_version_id)
    performance = next(
        (p.result for p in stored.performance if p.scope_kind == scope_kind
         and p.scope_key == scope_key),
        None,
    )  # fmt: skip
    quality_issues = []
    quality = next(
        (q for q in stored.quality if q.scope_kind == scope_kind and q.scope_key == scope_key),
        None,
    )
    if quality is not None:
        quality_issues = [f for f in stored.quality_features.get(quality.id, []) if f.issue]
    page = ReportPage(
        model=model_name,
        version=version.version if version else None,
        window_start=stored.window_start,
        window_end=stored.window_end,
        scope_kind=scope_kind,
        scope_key=scope_key,
        scope=drift.result,
        features=stored.drift_features.get(drift.id, []),
        drifting=[
            (s.result, stored.drifted_features(s.scope_kind, s.scope_key))
            for s in stored.drift
            if s.result.drifted
        ],
        quality_issues=quality_issues,
        performance=performance,
        estimation=[row.result for row in stored.estimation],
        multivariate=[row.result for row in stored.multivariate],
        evidently=_evidently(conn, model.id, stored.window_start, stored.window_end, drift.id,
                             version, scope_kind, scope_key, keep=keep_snapshot)
        if evidently else None,
    )  # fmt: skip
    return BuiltReport(
        render_html(page),
        model_name,
        stored.window_start,
        scope_kind,
        scope_key,
        drift.result.drifted,
        tuple(stored.drifted_features(scope_kind, scope_key)),
        _result_of(stored.estimation, scope_kind, scope_key),
        _result_of(stored.multivariate, scope_kind, scope_key),
    )


def _result_of(rows: Sequence[results.Stored[R]], scope_kind: str, scope_key: str) -> R | None:
    return next(
        (r.result for r in rows if r.scope_kind == scope_kind and r.scope_key == scope_key), None
    )


def parse_scope(text: str) -> tuple[str, str]:
    """``fleet`` or ``KIND:NAME`` as (scope kind, scope key)."""
    if text == FLEET:
        return FLEET, FLEET_KEY
    kind, _, key = text.partition(":")
    if kind not in (SITE, GROUP, NODE) or not key:
        raise ValidationFailed(
            f"--scope must be 'fleet', 'site:NAME', 'group:NAME' or 'node:NAME', got {text!r}",
            details=[{"field": "scope", "message": "not a scope"}],
        )
    return kind, key


def _evidently(
    conn: Connection,
    model_id: int,
    start: datetime,
    end: datetime,
    scope_id: int,
    version: registry.Version | None,
    scope_kind: str,
    scope_key: str,
    *,
    keep: bool,
) -> EvidentlyReport | None:
    kept = results.snapshot(conn, scope_id)
    if kept is not None:
        return EvidentlyReport.from_snapshot(zlib.decompress(kept))
    reference = ReferenceCache(size=1).get(conn, version) if version else None
    if reference is None:
        return None
    node_ids = None
    if scope_kind != FLEET:
        node_ids = [
            n.id
            for n in list_nodes(conn)
            if {SITE: n.site, GROUP: n.group_name, NODE: n.name}[scope_kind] == scope_key
        ]
    frame = load_window(conn, model_id, start, end, node_ids=node_ids)
    if not len(frame):
        return None
    report = evidently_report(reference.frame, frame, profile=reference.profile)
    if not keep:
        return report
    # Kept, so that the next report of this window and scope renders at once.
    with begin_write(conn.engine) as write:
        results.save_snapshot(write, scope_id, zlib.compress(report.snapshot_json().encode(), 6))
    return report


def _version(conn: Connection, model_id: int, version_id: int | None) -> registry.Version | None:
    for version in registry.versions(conn, model_id):
        if version.id == version_id:
            return version
    return registry.deployment(conn, model_id).production


def _parse(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"--window must be an ISO 8601 time or 'latest', got {value!r}",
            details=[{"field": "window", "message": "not ISO 8601"}],
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
