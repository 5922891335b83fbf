"""Evidently's HTML report of an analysed window: from its kept snapshot, or made anew."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection

from monitor.analysis.report import evidently_report, render_snapshot
from monitor.errors import NotFound, ValidationFailed
from monitor.jobs.reference import ReferenceCache
from monitor.storage import models, registry, results
from monitor.storage.windows import load_window


@dataclass(frozen=True)
class WrittenReport:
    """Where the report went, which window it shows, and what drifted (fleet-wide)."""

    path: Path
    window_start: datetime
    drifted_features: tuple[str, ...]


def write_report(
    conn: Connection, model_name: str, window: str = "latest", out: str | None = None
) -> WrittenReport:
    """Write the report of the model's window starting at ``window`` (ISO 8601) or of the
    latest analysed window. The snapshot kept by the worker is rendered when there is one;
    otherwise the report is computed from the stored records and the reference."""
    model = models.get_model(conn, model_name)
    runs = results.find_runs(conn, model.id, "drift", scope_kind="fleet")
    if window != "latest":
        start = _parse(window)
        runs = [r for r in runs if r.window_start == start]
    if not runs:
        raise NotFound(
            f"no analysed window of {model_name} "
            + ("yet: is the worker running?" if window == "latest" else f"starts at {window}"),
            code="no_window",
        )
    run = runs[-1]
    path = Path(out or f"report-{model_name}-{run.window_start:%Y%m%dT%H%M}.html")
    snapshot = results.snapshot(conn, run.id)
    if snapshot is not None:
        render_snapshot(zlib.decompress(snapshot), path)
    else:
        frame = load_window(conn, model.id, run.window_start, run.window_end)
        version = _version(conn, model.id, run.model_version_id)
        reference = ReferenceCache(size=1).get(conn, version) if version else None
        if reference is None:
            raise NotFound(
                f"{model_name} has no reference data to compare with", code="no_reference"
            )
        evidently_report(reference.frame, frame, profile=reference.profile).save_html(path)
    drifted = tuple(run.summary.get("drifted_features", []))
    return WrittenReport(path, run.window_start, drifted)


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
