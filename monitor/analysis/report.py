"""Evidently's own report of a window against its reference: HTML, and a snapshot to store.

Evidently costs about 1.5 s plus a few seconds per 10k rows per report, so a report is for the
fleet-wide window only and runs on a sample: at most ``max_rows`` rows of each side, drawn
uniformly without replacement with ``seed`` (``DataFrame.sample(n, random_state=seed)``), so a
report can be reproduced. Its numbers are Evidently's on that sample; the engine's numbers in
``analyse_drift`` are on every row, and equal Evidently's when no sampling happens.

Columns are handed over with the kinds of the reference profile and the spec's per-column
methods and thresholds, so Evidently picks what ``analyse_drift`` picks; features lose their
``feature:`` prefix. Evidently is imported only when a report is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from monitor.analysis.columns import CATEGORICAL, NUMERICAL, numeric_values
from monitor.analysis.profile import ReferenceProfile
from monitor.analysis.spec import METHODS, DriftSpec, evidently_drifted

DEFAULT_MAX_ROWS = 20_000
DEFAULT_SEED = 0


@dataclass(frozen=True, eq=False)
class EvidentlyReport:
    """A finished Evidently report: the columns it found drifted and the snapshot."""

    #: Columns (names without ``feature:``) Evidently's DataDriftPreset marks as drifted.
    drifted_columns: tuple[str, ...]
    #: Evidently's share of drifted columns and its dataset-drift verdict.
    share_drifted: float
    dataset_drift: bool
    #: Rows each side of the comparison after sampling.
    n_reference: int
    n_current: int
    _snapshot: Any = field(repr=False)

    def snapshot_json(self) -> str:
        """The whole snapshot (metrics and rendered widgets), as ``Snapshot.dumps()`` writes
        it: store this and ``render_snapshot`` turns it into HTML later."""
        return str(self._snapshot.dumps())

    def metrics(self) -> dict[str, Any]:
        """Evidently's metric values only (``Snapshot.dict()``): small, for dashboards."""
        return dict(self._snapshot.dict())

    def save_html(self, path: str | Path) -> None:
        self._snapshot.save_html(str(path))


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    spec: DriftSpec | None = None,
    profile: ReferenceProfile | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = DEFAULT_SEED,
    summary: bool = False,
) -> EvidentlyReport:
    """Run Evidently's DataDriftPreset (and DataSummaryPreset with ``summary``, about 60%
    more time) on window-shaped frames. ``profile`` saves profiling ``reference`` again."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    profile = profile or ReferenceProfile.build(reference, spec)
    spec = profile.spec
    names = {c.column: _report_name(c.column) for c in profile.columns}
    ref = _prepared(reference, profile, names, max_rows, seed)
    cur = _prepared(current, profile, names, max_rows, seed)
    definition = DataDefinition(
        numerical_columns=[names[c.column] for c in profile.columns if c.kind == NUMERICAL],
        categorical_columns=[names[c.column] for c in profile.columns if c.kind == CATEGORICAL],
    )
    by_name = {c.name: names[c.column] for c in profile.columns}
    drift = DataDriftPreset(
        per_column_method={by_name[k]: v for k, v in spec.methods.items()} or None,
        per_column_threshold={by_name[k]: v for k, v in spec.thresholds.items()} or None,
    )
    presets: list[Any] = [drift, DataSummaryPreset()] if summary else [drift]
    snapshot = Report(presets).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    drifted, share, dataset_drift = _drift_verdicts(snapshot.dict())
    return EvidentlyReport(drifted, share, dataset_drift, len(ref), len(cur), snapshot)


def html_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: str | Path,
    *,
    spec: DriftSpec | None = None,
    profile: ReferenceProfile | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = DEFAULT_SEED,
    summary: bool = False,
) -> EvidentlyReport:
    """Write Evidently's HTML report of ``current`` against ``reference`` to ``path``."""
    report = evidently_report(
        reference,
        current,
        spec=spec,
        profile=profile,
        max_rows=max_rows,
        seed=seed,
        summary=summary,
    )
    report.save_html(path)
    return report


def render_snapshot(snapshot_json: str | bytes, path: str | Path) -> None:
    """Write the HTML of a stored snapshot (``EvidentlyReport.snapshot_json``)."""
    from evidently.core.report import Snapshot

    text = snapshot_json.decode() if isinstance(snapshot_json, bytes) else snapshot_json
    Snapshot.loads(text).save_html(str(path))


def _report_name(column: str) -> str:
    return column.removeprefix("feature:")


def _prepared(
    frame: pd.DataFrame,
    profile: ReferenceProfile,
    names: dict[str, str],
    max_rows: int,
    seed: int,
) -> pd.DataFrame:
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    columns: dict[str, Any] = {}
    for column in profile.columns:
        if column.column not in frame:
            continue
        series = frame[column.column]
        if column.kind == NUMERICAL:
            # As analyse_drift reads them: text that should be numbers is parsed or missing.
            series = pd.Series(numeric_values(series)[0], index=series.index)
        columns[names[column.column]] = series
    return pd.DataFrame(columns).reset_index(drop=True)


def _drift_verdicts(metrics: dict[str, Any]) -> tuple[tuple[str, ...], float, bool]:
    drifted = []
    share = 0.0
    drift_share = 0.5
    for metric in metrics["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            drift_share = float(config.get("drift_share", 0.5))
        elif kind.endswith("ValueDrift") and _value_drifted(
            config["method"], float(metric["value"]), config["threshold"]
        ):
            drifted.append(config["column"])
    return tuple(drifted), share, share >= drift_share


def _value_drifted(method_name: str, value: float, threshold: float) -> bool:
    # Evidently's rule by method: its config names a default method by display name and an
    # override as given; other methods' display names say "p_value" when they are tests.
    for method in METHODS.values():
        if method_name in (method.name, method.display_name):
            return evidently_drifted(method.name, value, threshold)
    return value < threshold if "p_value" in method_name else value >= threshold
