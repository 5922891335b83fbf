"""Commands that read results: `edge-monitor status`, `windows` and `results`.

Each prints what it found in words (a drifting node is a line that says so) and exits 0; the
human output of `results` is drawn from the same typed rows (monitor.commands.results'
``FoundResults``, read through storage.results) as the document `results --json` prints and
the read API answers, so the three never disagree.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from monitor.commands.results import FoundWindow, ScopeResults
    from monitor.storage.readout import EstimationScope, MultivariateScope

_T = TypeVar("_T")

#: Drift lines per scope kind that `status` spells out; the rest are counted.
SHOWN_SCOPES = 20


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
    from monitor.cli import _command, _positive
    from monitor.commands.results import (
        DEFAULT_RESULT_WINDOWS,
        DEFAULT_WINDOWS,
        MAX_RESULT_WINDOWS,
        MAX_WINDOWS,
    )

    status = _command(
        commands,
        "status",
        _status,
        "the fleet at a glance: nodes online, the latest window's drift, accuracy",
    )
    status.add_argument("--model", help="one model (default: every model)")

    windows = _command(commands, "windows", _windows, "a model's analysed windows, newest first")
    windows.add_argument("--model", required=True, help="the model's name (required)")
    windows.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_WINDOWS,
        help=f"at most this many (max {MAX_WINDOWS})",
    )
    windows.add_argument(
        "--since", metavar="TIME", help="only windows starting at or after TIME (ISO 8601, UTC)"
    )

    found = _command(
        commands,
        "results",
        _results,
        "the verdicts of an analysed window per scope: drift, quality, performance (realised "
        "and estimated, with the estimate's band and trust) and multivariate drift",
    )
    found.add_argument("--model", required=True, help="the model's name (required)")
    which = found.add_mutually_exclusive_group()
    which.add_argument(
        "--window",
        default="latest",
        help='"latest", or a time (ISO 8601, UTC) the window holds',
    )
    which.add_argument(
        "--since",
        metavar="TIME",
        help="the windows starting at or after TIME (ISO 8601, UTC), newest first",
    )
    found.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_RESULT_WINDOWS,
        help=f"with --since: at most this many windows (max {MAX_RESULT_WINDOWS})",
    )
    found.add_argument(
        "--scope",
        help='one scope: "fleet", "site:NAME", "group:NAME" or "node:NAME"; or every scope of a '
        'kind: "site", "group" or "node" (default: all)',
    )
    found.add_argument(
        "--json",
        action="store_true",
        help="print the JSON document the read API answers (GET /v1/models/M/results)",
    )


def _checked(parse: Callable[..., _T], *args: Any) -> _T:
    """A query value parsed by the shared rule; refused as a usage error (exit 2)."""
    from monitor.cli import UsageError
    from monitor.errors import ValidationFailed

    try:
        return parse(*args)
    except ValidationFailed as exc:
        raise UsageError(exc.message) from None


def _offline_after() -> timedelta:
    from monitor.cli import _settings

    return timedelta(seconds=_settings().health_offline_after_seconds)


def _not_analysed(model: str) -> str:
    return (
        f"{model}: no window analysed yet; once records have arrived, run "
        '"edge-monitor worker --once" (or keep "edge-monitor worker" running)'
    )


# --- status -------------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import results

    fleet = _run_command(results.fleet_status, _offline_after(), model=args.model)
    live = {k: v for k, v in fleet.counts.items() if v}
    shown = ", ".join(f"{n} {status}" for status, n in live.items())
    print(f"nodes: {shown or 'none registered (edge-monitor nodes add NAME)'}")
    for node in fleet.skewed:
        assert node.clock_skew_seconds is not None and node.clock_skew_at is not None
        print(
            f"clock skew: node {node.name} sent record times {skew(node.clock_skew_seconds)} "
            f"(seen {_iso(node.clock_skew_at)})"
        )
    if not fleet.models:
        print('models: none yet; register one with "edge-monitor models add NAME"')
    for model in fleet.models:
        for line in _model_lines(model):
            print(line)
    return 0


def _model_lines(model: Any) -> list[str]:
    latest = model.latest
    if latest is None:
        lines = [_not_analysed(model.model)]
    else:
        fleet = latest.fleet.result
        lines = [
            f"{model.model}: latest window {_iso(latest.window_start)} to "
            f"{_iso(latest.window_end)} ({fleet.n_rows} records, revision {latest.revision})"
        ]
        if model.fleet_drifted:
            lines.append(f"  drift: fleet on {', '.join(model.fleet_drifted)}")
        for kind, scopes in model.drifting.items():
            for key, features in scopes[:SHOWN_SCOPES]:
                on = f" on {', '.join(features)}" if features else " (prediction only)"
                lines.append(f"  drift: {kind} {key}{on}")
            if len(scopes) > SHOWN_SCOPES:
                lines.append(f"  drift: and {len(scopes) - SHOWN_SCOPES} more {kind}s")
        lines.append(f"  nodes drifting: {latest.nodes_drifting} of {latest.nodes}")
        if model.features_where:
            lines.append(
                "  features drifting: "
                + "; ".join(
                    f"{feature} at {_where(counts)}"
                    for feature, counts in model.features_where.items()
                )
            )
        elif fleet.drifted is None:
            lines.append("  drift: too little data in the window for a verdict")
        else:
            lines.append("  drift: none")
        lines.append(
            f"  quality: issues at fleet on {', '.join(model.quality_issues)}"
            if model.quality_issues
            else "  quality: no issues at fleet"
        )
        lines.extend(_later_kinds(model))
    lines.append("  " + _accuracy(model.performance))
    return lines


def _later_kinds(model: Any) -> list[str]:
    """The latest window's multivariate drift and the fleet's estimate, with the scopes whose
    estimate is not trusted."""
    from monitor.commands.results import NOT_ESTIMABLE

    lines = []
    if model.multivariate_drifting:
        lines.append(f"  multivariate drift: {_scopes(model.multivariate_drifting)}")
    elif model.multivariate_judged:
        lines.append("  multivariate drift: none")
    estimate = model.estimate
    if estimate is None:
        return lines
    if estimate.result.status in NOT_ESTIMABLE:
        lines.append(f"  estimated performance: none, {NOT_ESTIMABLE[estimate.result.status]}")
        return lines
    lines.append(estimation_lines(estimate.result, where=" at fleet")[0])
    if model.untrusted:
        lines.append(f"  estimate not trusted at {_scopes(model.untrusted)}")
    return lines


def _scopes(keys: list[tuple[str, str]]) -> str:
    """Scopes in words, at most SHOWN_SCOPES of them named."""
    names = ["fleet" if kind == "fleet" else f"{kind} {key}" for kind, key in keys]
    more = len(names) - SHOWN_SCOPES
    return ", ".join(names[:SHOWN_SCOPES]) + (f" and {more} more" if more > 0 else "")


def _where(counts: dict[str, int]) -> str:
    parts = ["fleet"] if counts.get("fleet") else []
    for kind in ("site", "group", "node"):
        n = counts.get(kind, 0)
        if n:
            parts.append(f"{n} {kind}{'s' if n > 1 else ''}")
    return ", ".join(parts)


def _accuracy(stored: Any) -> str:
    if stored is None:
        return "accuracy: no labels yet (send them with Monitor.log_label or POST /v1/labels)"
    p = stored.result
    coverage = f"{p.label_coverage:.0%}" if p.label_coverage is not None else "?"
    figure = _main_figure(p)
    return (
        f"accuracy: {figure} with {p.n_labelled} of {p.n_rows} records labelled ({coverage}) "
        f"in window {_iso(stored.window_start)}"
    )


def _main_figure(p: Any) -> str:
    if p.accuracy is not None:
        return f"{p.accuracy:.3f}"
    if p.mae is not None:
        return f"n/a (regression: MAE {p.mae:.4g}, RMSE {p.rmse:.4g})"
    return f"not yet ({p.status})"


# --- windows ------------------------------------------------------------------------------------


def _windows(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command, _table
    from monitor.commands import results

    since = _checked(results.parse_time, args.since, "since") if args.since else None
    _checked(results.check_limit, args.limit, results.MAX_WINDOWS)
    document = _run_command(results.windows_document, args.model, limit=args.limit, since=since)
    windows = document["windows"]
    if not windows:
        print(
            f"{args.model}: no window analysed since {args.since}"
            if since
            else _not_analysed(args.model)
        )
        return 0
    rows = []
    for w in windows:
        verdict = {True: "drifted", False: "no drift", None: "too little data"}[w["drifted"]]
        if w["status"] not in ("ok", "insufficient_data"):
            verdict = w["status"]
        rows.append(
            [
                w["window_start"],
                w["window_end"],
                str(w["n_rows"]),
                verdict,
                f"{w['nodes_drifting']} of {w['nodes']}",
                str(w["revision"]),
            ]
        )
    headers = ["START", "END", "RECORDS", "FLEET DRIFT", "NODES DRIFTING", "REVISION"]
    for line in _table(headers, rows):
        print(line)
    drifted = sum(1 for w in windows if w["drifted"])
    print(f"found: fleet drift in {drifted} of {len(windows)} window(s)")
    return 0


# --- results ------------------------------------------------------------------------------------


def _results(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import results

    _checked(results.parse_window, args.window)
    _checked(results.parse_scope, args.scope)
    _checked(results.check_limit, args.limit, results.MAX_RESULT_WINDOWS)
    since = _checked(results.parse_time, args.since, "since") if args.since else None
    found = _run_command(
        results.find_results,
        args.model,
        window=args.window,
        since=since,
        scope=args.scope,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps(results.results_of(found), indent=2))
        return 0
    if not found.windows:
        print(
            f"{args.model}: no window analysed since {args.since}"
            if since
            else _not_analysed(args.model)
        )
        return 0
    for window in found.windows:
        for line in window_lines(found.model, window, scope=args.scope):
            print(line)
    return 0


def window_lines(model: str, window: FoundWindow, *, scope: str | None = None) -> list[str]:
    """One window's results in words: per scope its drift verdict, each drifted feature's
    method, statistic and adjusted p-value, quality issues, realised performance, the
    estimated performance with its band and trust verdict, and multivariate drift; then what
    was found."""
    lines = [f"{model}: window {_iso(window.window_start)} to {_iso(window.window_end)}"]
    lines.extend(_window_notes(window))
    if not window.scopes:
        lines.append(f"  no scope {scope} in this window (scopes are the nodes that sent records)")
    for s in window.scopes:
        lines.extend(_scope_lines(s))
    lines.extend(found_lines(window))
    return lines


def _window_notes(window: FoundWindow) -> list[str]:
    """One line per later kind the window has no per-scope result of, saying why."""
    from monitor.commands.results import NOT_ESTIMABLE

    notes = []
    if not window.estimated:
        notes.append(
            "  estimated performance: not computed for this window (analysed before "
            "estimation existed)"
        )
    elif window.not_estimable is not None:
        notes.append(f"  estimated performance: none, {NOT_ESTIMABLE[window.not_estimable]}")
    if not window.multivariate_analysed:
        notes.append(
            "  multivariate drift: not computed for this window (analysed before it existed)"
        )
    elif window.multivariate_unjudged is not None:
        notes.append("  multivariate drift: none, the model version has no reference data")
    return notes


def found_lines(window: FoundWindow) -> list[str]:
    """What the window's scopes (those asked for) were found to be, one line per kind."""
    drifting = [s.name for s in window.drifting()]
    lines = [
        f"found: drift at {len(drifting)} scope(s): {', '.join(drifting)}"
        if drifting
        else "found: no drift"
    ]
    multivariate = [s.name for s in window.multivariate_drifting()]
    if multivariate:
        lines.append(
            f"found: multivariate drift at {len(multivariate)} scope(s): {', '.join(multivariate)}"
        )
    elif window.judged_multivariate():
        lines.append("found: no multivariate drift")
    untrusted = [s.name for s in window.untrusted()]
    if untrusted:
        lines.append(
            f"found: estimate not trusted at {len(untrusted)} scope(s): {', '.join(untrusted)}"
        )
    elif window.judged_estimates():
        lines.append("found: every estimate trusted")
    return lines


def _scope_lines(s: ScopeResults) -> list[str]:
    drift = s.drift
    if drift is None:
        head = f"{s.name}: no drift result"
    else:
        d = drift.result
        verdict = {True: "drifted", False: "no drift", None: "too little data for a verdict"}[
            d.drifted
        ]
        if d.status not in ("ok", "insufficient_data"):
            verdict = d.status
        head = f"{s.name}: {verdict} ({d.n_drifted} of {d.n_features} features, {d.n_rows} records)"
    lines = [head]
    if drift is not None:
        # How it was judged, when it is not simply this window against the version's reference.
        how = []
        if drift.reference and not drift.reference.startswith("version "):
            how.append(f"against {drift.reference}")
        if drift.span_start is not None:
            how.append(f"on the windows pooled since {_iso(drift.span_start)}")
        if drift.revision > 1:
            how.append(f"revision {drift.revision}, {drift.n_late} late rows")
        if how:
            lines.append(f"  judged {'; '.join(how)}")
        for f in s.drift_features:
            if f.drifted:
                lines.append(
                    f"  drift: {f.feature}: {f.method} {_num(f.statistic)} "
                    f"(threshold {_num(f.threshold)}), adjusted p-value "
                    f"{_p(f.adjusted_p_value)}"
                )
    if s.quality is not None and s.quality_issues:
        lines.append(f"  quality: issues on {', '.join(s.quality_issues)}")
    if s.performance is not None and s.performance.result.n_labelled:
        p = s.performance.result
        figures = [
            f"{name} {value:.3f}"
            for name in ("accuracy", "f1", "roc_auc", "mae", "rmse")
            if (value := getattr(p, name)) is not None
        ]
        coverage = p.label_coverage
        lines.append(
            f"  performance: {', '.join(figures) or p.status} ({p.n_labelled} labelled"
            + (f", {coverage:.0%})" if coverage is not None else ")")
        )
    # A kind the whole window could not compute is said once, in the window's notes.
    if s.estimation is not None and not s.estimation_unavailable:
        lines.extend(estimation_lines(s.estimation.result))
    if s.multivariate is not None and not s.multivariate_unavailable:
        lines.append(multivariate_line(s.multivariate.result))
    return lines


#: The estimated figures besides accuracy, in the order they are shown.
OTHER_ESTIMATES = ("precision", "recall", "f1", "roc_auc")


def estimation_lines(e: EstimationScope, *, where: str = "") -> list[str]:
    """A scope's estimated performance in words: the accuracy with its band and the trust
    verdict on the first line (an untrusted estimate says so before its reason, and nothing
    in it reassures), the other figures, and the accuracy realised on the labelled records
    beside what the estimate promised for them."""
    if e.accuracy is None:
        return [
            f"  estimated performance{where}: too few scored records for an estimate "
            f"({e.n_scored} of {e.n_rows})"
        ]
    head = f"  estimated accuracy{where} {_band(e.accuracy, e.accuracy_lower, e.accuracy_upper)}"
    if e.trusted is False:
        reason = (e.trust_reason or "").removeprefix("not trusted: ")
        head += f", not trusted: {reason}" if reason else ", not trusted"
    elif e.trusted is True:
        head += f", trusted ({e.trust_reason})" if e.trust_reason else ", trusted"
    else:
        head += ", trust unknown"
    lines = [head]
    others = [
        f"{name} {_band(value, getattr(e, name + '_lower'), getattr(e, name + '_upper'))}"
        for name in OTHER_ESTIMATES
        if (value := getattr(e, name)) is not None
    ]
    lines.append(
        f"    estimated {', '.join(others)} on {e.n_scored} scored records"
        if others
        else f"    on {e.n_scored} scored records"
    )
    if e.n_labelled and e.realised_accuracy is not None:
        promised = (
            f", where the estimate promised {e.expected_accuracy:.2f}"
            if e.expected_accuracy is not None
            else ""
        )
        calibration = (
            f" (calibration error {e.calibration_error:.3f})"
            if e.calibration_error is not None
            else ""
        )
        lines.append(
            f"    realised accuracy {e.realised_accuracy:.2f} on {e.n_labelled} labelled "
            f"records{promised}{calibration}"
        )
    return lines


def multivariate_line(m: MultivariateScope) -> str:
    """A scope's multivariate drift in words: the verdict, the reconstruction error against
    the reference's and the thresholds, and the adjusted p-value."""
    figures = (
        f"reconstruction error {_num(m.reconstruction_error)} vs reference "
        f"{_num(m.reference_error)}, thresholds {_num(m.lower_threshold)}\u2013"
        f"{_num(m.upper_threshold)}"
    )
    if m.drifted is None:
        return f"  multivariate: too little data for a verdict ({m.n_rows} records; {figures})"
    p = f", adjusted p-value {_p(m.adjusted_p_value)}"
    if m.drifted:
        return f"  multivariate drift: {figures}{p}"
    return f"  multivariate: no drift ({figures}{p})"


def report_findings(
    scope: str, estimation: EstimationScope | None, multivariate: MultivariateScope | None
) -> list[str]:
    """What `edge-monitor report` prints of a scope's estimate and multivariate drift beside
    its drift verdict: the estimate's first line (its band and trust) and the multivariate
    line, each led by the scope; nothing for a kind the window has no row of."""
    from monitor.commands.results import NO_REFERENCE, NOT_ESTIMABLE

    lines = []
    if estimation is not None:
        said = (
            f"  estimated performance: none, {NOT_ESTIMABLE[estimation.status]}"
            if estimation.status in NOT_ESTIMABLE
            else estimation_lines(estimation)[0]
        )
        lines.append(f"{scope}: {said.strip()}")
    if multivariate is not None and multivariate.status != NO_REFERENCE:
        lines.append(f"{scope}: {multivariate_line(multivariate).strip()}")
    return lines


def _band(value: float, lower: float | None, upper: float | None) -> str:
    if lower is None or upper is None:
        return f"{value:.2f}"
    return f"{value:.2f} ({lower:.2f}\u2013{upper:.2f})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


# --- shared with `nodes list` -------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def ago(moment: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: ``never``, ``12 s ago``, ``5 min ago``."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def skew(seconds: float) -> str:
    """A clock skew (device minus received time) in words: ``3.2 h ahead``, ``40 s behind``."""
    way = "ahead" if seconds >= 0 else "behind"
    size = abs(seconds)
    for unit, scale in (("d", 86_400.0), ("h", 3_600.0), ("min", 60.0)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} {way}"
    return f"{size:.0f} s {way}"
