"""The HTML report of a window: the product's verdicts, with Evidently's visuals beside them.

``render_html`` writes the page a person reads: a header naming model, version, window and
scope; the scope's verdict and its share of drifted features; every feature's statistic,
p-values and verdict; the scopes that drifted and on what; data quality and performance. The
verdicts are the stored ones (``monitor.schema`` rows), never Evidently's.

Below them the page embeds Evidently's own report of the window (``evidently_report``), for its
distribution plots.

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

import html as html_text
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from monitor.analysis.columns import CATEGORICAL, NUMERICAL, numeric_values
from monitor.analysis.profile import ReferenceProfile
from monitor.analysis.spec import METHODS, DriftSpec
from monitor.schema import (
    CALIBRATION,
    FEATURE,
    FLEET,
    FLEET_KEY,
    HISTORY,
    LABELS_AGREE,
    NO_CONTRARY_EVIDENCE,
    NO_PROBABILITIES,
    NO_REFERENCE,
    NO_REFERENCE_LABELS,
    NOT_CLASSIFICATION,
    OUTPUTS_WITHOUT_INPUTS,
    SCOPE_KINDS,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    QualityFeature,
    feature_name,
)

DEFAULT_MAX_ROWS = 20_000
DEFAULT_SEED = 0


@dataclass(frozen=True, eq=False)
class EvidentlyReport:
    """A finished Evidently report: the columns it found drifted and the snapshot.

    Evidently's verdicts are its own, on a sample, with its rules; the product's verdicts are
    ``analyse_drift``'s. The report page shows both, labelled."""

    #: Columns (names without ``feature:``) Evidently's DataDriftPreset marks as drifted.
    drifted_columns: tuple[str, ...]
    #: Evidently's share of drifted columns.
    share_drifted: float
    #: Rows each side of the comparison after sampling (None: read back from a snapshot).
    n_reference: int | None
    n_current: int | None
    _snapshot: Any = field(repr=False)

    @classmethod
    def from_snapshot(cls, snapshot_json: str | bytes) -> EvidentlyReport:
        """A report read back from ``snapshot_json``."""
        from evidently.core.report import Snapshot

        text = snapshot_json.decode() if isinstance(snapshot_json, bytes) else snapshot_json
        snapshot = Snapshot.loads(text)
        drifted, share = _drift_verdicts(snapshot.dict())
        return cls(drifted, share, None, None, snapshot)

    def snapshot_json(self) -> str:
        """The whole snapshot (metrics and rendered widgets), as ``Snapshot.dumps()`` writes
        it: store this and ``render_snapshot`` turns it into HTML later."""
        return str(self._snapshot.dumps())

    def metrics(self) -> dict[str, Any]:
        """Evidently's metric values only (``Snapshot.dict()``): small, for dashboards."""
        return dict(self._snapshot.dict())

    def save_html(self, path: str | Path) -> None:
        self._snapshot.save_html(str(path))

    def html(self) -> str:
        """Evidently's report as one standalone HTML document."""
        return str(self._snapshot.get_html_str(as_iframe=False))


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
    drifted, share = _drift_verdicts(snapshot.dict())
    return EvidentlyReport(drifted, share, len(ref), len(cur), snapshot)


def render_snapshot(snapshot_json: str | bytes, path: str | Path) -> None:
    """Write the HTML of a stored snapshot (``EvidentlyReport.snapshot_json``)."""
    from evidently.core.report import Snapshot

    text = snapshot_json.decode() if isinstance(snapshot_json, bytes) else snapshot_json
    Snapshot.loads(text).save_html(str(path))


def _report_name(column: str) -> str:
    return feature_name(column) or column


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


def _drift_verdicts(metrics: dict[str, Any]) -> tuple[tuple[str, ...], float]:
    drifted = []
    share = 0.0
    for metric in metrics["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift") and _value_drifted(
            config["method"], float(metric["value"]), config["threshold"]
        ):
            drifted.append(config["column"])
    return tuple(drifted), share


def _value_drifted(method_name: str, value: float, threshold: float) -> bool:
    # Evidently's rule by method: its config names a default method by display name and an
    # override as given; other methods' display names say "p_value" when they are tests.
    for method in METHODS.values():
        if method_name in (method.name, method.display_name):
            return bool(method.evidently_verdicts(value, threshold))
    return value < threshold if "p_value" in method_name else value >= threshold


# --- The product's report page --------------------------------------------------------------


@dataclass(frozen=True)
class ReportPage:
    """What the report page shows: the window, one scope's verdicts, the drifting scopes."""

    model: str
    version: str | None
    window_start: datetime
    window_end: datetime
    scope_kind: str
    scope_key: str
    scope: DriftScope
    features: Sequence[DriftFeature]
    #: Every scope of the window that drifted, with its drifted features.
    drifting: Sequence[tuple[DriftScope, Sequence[str]]]
    quality_issues: Sequence[QualityFeature] = ()
    performance: PerformanceScope | None = None
    #: Every scope's estimated performance and multivariate drift in the window (empty: the
    #: window was analysed before these kinds existed).
    estimation: Sequence[EstimationScope] = ()
    multivariate: Sequence[MultivariateScope] = ()
    #: Evidently's report of the same window, embedded as it is (None: left out).
    evidently: EvidentlyReport | None = None


def render_html(page: ReportPage) -> str:
    """The report page as one standalone HTML document."""
    e = html_text.escape
    scope = page.scope
    scope_name = "fleet" if page.scope_kind == "fleet" else f"{page.scope_kind} {page.scope_key}"
    drifted = [f.feature for f in page.features if f.drifted and f.role == FEATURE]
    if scope.drifted is None:
        headline = "Not enough data for a drift verdict"
        tone = "unknown"
    elif scope.drifted:
        headline = f"Drift detected: {', '.join(drifted)}"
        tone = "bad"
    else:
        headline = "No drift detected"
        tone = "good"
    share = "-" if scope.share_drifted is None else f"{scope.share_drifted:.0%}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(page.model)} drift report, {page.window_start:%Y-%m-%d %H:%M}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header>",
        f"<h1>{e(page.model)} <small>version {e(page.version or 'unknown')}</small></h1>",
        f"<p class='window'>Window {page.window_start.isoformat()} to "
        f"{page.window_end.isoformat()} &middot; scope: <b>{e(scope_name)}</b> &middot; "
        f"{scope.n_rows:,} records</p>",
        "</header>",
        f"<p id='verdict' class='verdict {tone}'>{e(headline)}</p>",
        f"<p>{scope.n_drifted} of {scope.n_features} features drifted ({share}) after "
        "false-discovery control; prediction drift: "
        f"{_yes_no(scope.prediction_drifted)}.</p>",
        "<h2>Features</h2>",
        "<table id='features'><tr><th>feature</th><th>method</th><th>statistic</th>"
        "<th>threshold</th><th>p-value</th><th>adjusted p-value</th><th>rows</th>"
        "<th>verdict</th><th>Evidently's verdict</th></tr>",
    ]
    for f in sorted(page.features, key=lambda f: (not f.drifted, f.role != FEATURE, f.feature)):
        verdict = {True: "drifted", False: "not drifted", None: "insufficient data"}[f.drifted]
        parts.append(
            f"<tr class='{'bad' if f.drifted else ''}'><td>{e(f.feature)}</td>"
            f"<td>{e(f.method or '-')}</td><td>{_num(f.statistic)}</td>"
            f"<td>{_num(f.threshold)}</td><td>{_num(f.p_value)}</td>"
            f"<td>{_num(f.adjusted_p_value)}</td><td>{f.n_current:,}</td>"
            f"<td class='verdict-cell'>{verdict}</td>"
            f"<td>{_yes_no(f.evidently_drifted, 'drifted', 'not drifted')}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Scopes that drifted</h2>")
    if page.drifting:
        parts.append(
            "<table id='scopes'><tr><th>scope</th><th>records</th><th>share drifted</th>"
            "<th>drifted features</th></tr>"
        )
        for s, names in page.drifting:
            parts.append(
                f"<tr><td>{e(s.scope_kind)} {e(s.scope_key)}</td><td>{s.n_rows:,}</td>"
                f"<td>{_pct(s.share_drifted)}</td><td>{e(', '.join(names))}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Data quality</h2>")
    if page.quality_issues:
        parts.append(
            "<table id='quality'><tr><th>feature</th><th>missing</th><th>out of range</th>"
            "<th>new-category rows</th><th>invalid</th></tr>"
        )
        for q in page.quality_issues:
            parts.append(
                f"<tr><td>{e(q.feature)}</td><td>{_pct(q.missing_share)}</td>"
                f"<td>{_pct(q.out_of_range_share)}</td><td>{q.n_new_category_rows or 0}</td>"
                f"<td>{q.n_invalid}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No issues.</p>")
    parts.append("<h2>Performance</h2>")
    p = page.performance
    if p is None or p.status != "ok":
        labelled = 0 if p is None else p.n_labelled
        parts.append(f"<p>Not enough labels yet ({labelled} labelled records).</p>")
    else:
        figures = ", ".join(
            f"{name} {value:.3f}"
            for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")
            if (value := getattr(p, name)) is not None
        )
        parts.append(
            f"<p>{e(figures)} on {p.n_labelled:,} labelled records "
            f"({_pct(p.label_coverage)} of the window).</p>"
        )
    parts.extend(_estimation_section(page))
    parts.extend(_multivariate_section(page))
    if page.evidently is not None:
        report = page.evidently
        parts.append(
            "<h2>Evidently's view</h2><p class='note'>Evidently's distribution plots of the "
            f"scope's window, on a sample{_sample(report)}. Its own verdicts (by its rules, on the "
            "sample) are shown for comparison; the verdicts above are the product's.</p>"
            f"<iframe id='evidently' srcdoc=\"{e(report.html())}\"></iframe>"
        )
    parts.append("</body></html>")
    return "".join(parts)


#: Scope rows the estimation and multivariate tables show at most; the report's own scope
#: and the scopes with a finding come first.
MAX_SCOPE_ROWS = 200
#: Why a model's performance cannot be estimated, by status (the fleet row alone is stored).
NOT_ESTIMABLE = {
    NOT_CLASSIFICATION: "the model is not a classifier",
    NO_PROBABILITIES: "its records carry no class probabilities",
    NO_REFERENCE_LABELS: "its reference data has no labels or probabilities to calibrate on",
    NO_REFERENCE: "the model version has no reference data",
}
#: The evidence that decided a trust verdict, in words.
EVIDENCE = {
    CALIBRATION: "calibration: this window's labels contradict it",
    HISTORY: "history: the last labelled window contradicted it",
    OUTPUTS_WITHOUT_INPUTS: "outputs drifted while no input did",
    LABELS_AGREE: "labels agree with it",
    NO_CONTRARY_EVIDENCE: "no contrary evidence",
}


def _estimation_section(page: ReportPage) -> list[str]:
    """Estimated performance: the report's scope in one sentence (an untrusted estimate says
    so first, and is never drawn as good news), then a table of the window's scopes with
    their bands, realised accuracy where labels arrived, trust and the evidence that decided."""
    e = html_text.escape
    parts = ["<h2>Estimated performance</h2>"]
    rows = page.estimation
    if not rows:
        return [
            *parts,
            "<p id='estimation-note'>Not computed for this window: it was analysed before "
            "performance estimation existed.</p>",
        ]
    fleet = _row_of(rows, FLEET, FLEET_KEY)
    if fleet is not None and fleet.status in NOT_ESTIMABLE:
        return [
            *parts,
            f"<p id='estimation-note'>Not estimable: {e(NOT_ESTIMABLE[fleet.status])} "
            f"({e(fleet.status)}).</p>",
        ]
    own = _row_of(rows, page.scope_kind, page.scope_key)
    if own is None:
        parts.append("<p>No estimate for this scope in this window.</p>")
    elif own.accuracy is None:
        parts.append(
            f"<p id='estimate' class='verdict unknown'>Too few scored records for an estimate "
            f"({own.n_scored:,} of {own.n_rows:,})</p>"
        )
    else:
        figure = f"Estimated accuracy {_band(own.accuracy, own.accuracy_lower, own.accuracy_upper)}"
        if own.trusted is False:
            tone, said = "bad", "NOT TRUSTED"
        elif own.trusted is True:
            tone, said = "plain", "trusted"
        else:
            tone, said = "unknown", "trust unknown"
        parts.append(f"<p id='estimate' class='verdict {tone}'>{e(figure)}: {said}</p>")
        if own.trust_reason:
            decided = EVIDENCE.get(own.trust_evidence or "", own.trust_evidence or "-")
            parts.append(f"<p class='reason'>Decided by {e(decided)}: {e(own.trust_reason)}.</p>")
    ordered = sorted(
        rows,
        key=lambda r: (
            not _is(r, page.scope_kind, page.scope_key),
            r.trusted is not False,
            r.trusted is not None,
            *_scope_order(r),
        ),
    )
    shown = ordered[:MAX_SCOPE_ROWS]
    parts.append(
        "<table id='estimation'><tr><th>scope</th><th>scored records</th>"
        "<th>estimated accuracy</th><th>band</th><th>estimated ROC AUC</th>"
        "<th>realised accuracy (labelled)</th><th>estimate for those records</th>"
        "<th>calibration error</th><th>trust</th><th>decided by</th><th>why</th></tr>"
    )
    for r in shown:
        trust = {True: "trusted", False: "NOT TRUSTED", None: "-"}[r.trusted]
        realised = (
            f"{r.realised_accuracy:.3f} ({r.n_labelled:,})"
            if r.realised_accuracy is not None
            else ("-" if not r.n_labelled else f"- ({r.n_labelled:,})")
        )
        auc = "-" if r.roc_auc is None else _band(r.roc_auc, r.roc_auc_lower, r.roc_auc_upper)
        reason = _why(r.trust_reason) or (
            "too few scored records for an estimate" if r.accuracy is None else "-"
        )
        parts.append(
            f"<tr class='{'bad' if r.trusted is False else ''}'>"
            f"<td>{e(_scope_words(r.scope_kind, r.scope_key))}</td><td>{r.n_scored:,}</td>"
            f"<td>{_fig(r.accuracy)}</td><td>{_range(r.accuracy_lower, r.accuracy_upper)}</td>"
            f"<td>{e(auc)}</td><td>{realised}</td><td>{_fig(r.expected_accuracy)}</td>"
            f"<td>{_fig(r.calibration_error)}</td><td class='verdict-cell'>{trust}</td>"
            f"<td>{e(EVIDENCE.get(r.trust_evidence or '', r.trust_evidence or '-'))}</td>"
            f"<td>{e(reason)}</td></tr>"
        )
    parts.append("</table>")
    parts.extend(_left_out(ordered[MAX_SCOPE_ROWS:], lambda r: r.trusted is False, "untrusted"))
    return parts


def _multivariate_section(page: ReportPage) -> list[str]:
    """Multivariate drift: the report's scope's verdict, then a table of the window's scopes:
    reconstruction error against the reference's and the thresholds, p-value, verdict."""
    e = html_text.escape
    parts = ["<h2>Multivariate drift</h2>"]
    rows = page.multivariate
    if not rows:
        return [
            *parts,
            "<p id='multivariate-note'>Not computed for this window: it was analysed before "
            "multivariate drift existed.</p>",
        ]
    fleet = _row_of(rows, FLEET, FLEET_KEY)
    if fleet is not None and fleet.status == NO_REFERENCE:
        return [
            *parts,
            "<p id='multivariate-note'>Not analysed: the model version has no reference data.</p>",
        ]
    own = _row_of(rows, page.scope_kind, page.scope_key)
    if own is None:
        parts.append("<p>No multivariate result for this scope in this window.</p>")
    else:
        if own.drifted is None:
            tone, headline = "unknown", "Not enough data for a multivariate verdict"
        elif own.drifted:
            tone, headline = "bad", "Multivariate drift detected"
        else:
            tone, headline = "good", "No multivariate drift"
        parts.append(
            f"<p id='multivariate-verdict' class='verdict {tone}'>{headline}</p>"
            f"<p>Reconstruction error {_fig(own.reconstruction_error)} against the "
            f"reference's {_fig(own.reference_error)} (thresholds "
            f"{_range(own.lower_threshold, own.upper_threshold)} for {own.n_rows:,} records, "
            f"{own.n_components} principal components); adjusted p-value "
            f"{_num(own.adjusted_p_value)}.</p>"
        )
    ordered = sorted(
        rows,
        key=lambda r: (
            not _is(r, page.scope_kind, page.scope_key),
            not r.drifted,
            *_scope_order(r),
        ),
    )
    parts.append(
        "<table id='multivariate'><tr><th>scope</th><th>records</th>"
        "<th>reconstruction error</th><th>reference error</th><th>thresholds</th>"
        "<th>adjusted p-value</th><th>verdict</th><th>NannyML's verdict</th></tr>"
    )
    for r in ordered[:MAX_SCOPE_ROWS]:
        verdict = {True: "drifted", False: "not drifted", None: "insufficient data"}[r.drifted]
        parts.append(
            f"<tr class='{'bad' if r.drifted else ''}'>"
            f"<td>{e(_scope_words(r.scope_kind, r.scope_key))}</td><td>{r.n_rows:,}</td>"
            f"<td>{_fig(r.reconstruction_error)}</td><td>{_fig(r.reference_error)}</td>"
            f"<td>{_range(r.lower_threshold, r.upper_threshold)}</td>"
            f"<td>{_num(r.adjusted_p_value)}</td><td class='verdict-cell'>{verdict}</td>"
            f"<td>{_yes_no(r.nannyml_drifted, 'drifted', 'not drifted')}</td></tr>"
        )
    parts.append("</table>")
    parts.extend(_left_out(ordered[MAX_SCOPE_ROWS:], lambda r: bool(r.drifted), "drifted"))
    return parts


def _why(reason: str | None) -> str:
    """A trust reason without the verdict it opens with (shown beside it already)."""
    return (reason or "").removeprefix("not trusted: ")


def _left_out(rows: Sequence[Any], finding: Any, word: str) -> list[str]:
    if not rows:
        return []
    # Scopes with a finding sort first, so the rows left out have one only when too many do.
    found = sum(1 for r in rows if finding(r))
    more = f", {found} of them {word}" if found else f", none {word}"
    return [f"<p class='note'>{len(rows):,} more scopes not shown{more}.</p>"]


def _row_of(rows: Sequence[Any], kind: str, key: str) -> Any:
    return next((r for r in rows if _is(r, kind, key)), None)


def _is(row: Any, kind: str, key: str) -> bool:
    return bool(row.scope_kind == kind and row.scope_key == key)


def _scope_order(row: Any) -> tuple[int, str]:
    kind = row.scope_kind
    return (SCOPE_KINDS.index(kind) if kind in SCOPE_KINDS else len(SCOPE_KINDS), row.scope_key)


def _scope_words(kind: str, key: str) -> str:
    return "fleet" if kind == FLEET else f"{kind} {key}"


def _band(value: float, lower: float | None, upper: float | None) -> str:
    if lower is None or upper is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({lower:.3f}\u2013{upper:.3f})"


def _range(lower: float | None, upper: float | None) -> str:
    if lower is None or upper is None:
        return "-"
    return f"{lower:.3f}\u2013{upper:.3f}"


def _fig(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _sample(report: EvidentlyReport) -> str:
    if report.n_current is None or report.n_reference is None:
        return ""
    return f" of {report.n_current:,} records against {report.n_reference:,} reference rows"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _yes_no(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "-" if value is None else (yes if value else no)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "h1 small{font-weight:normal;color:#666}.window{color:#444}"
    ".verdict{font-size:1.4em;padding:.4em .8em;border-radius:6px;display:inline-block}"
    ".verdict.bad{background:#fde2e1;color:#a40000}.verdict.good{background:#e3f6e5;"
    "color:#1d6b2a}.verdict.unknown,.verdict.plain{background:#eee}.reason{color:#444}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em"
    " .6em;text-align:left}tr.bad td{background:#fff3f2}"
    "iframe{width:100%;height:1400px;border:1px solid #ddd}.note{color:#555}"
)
