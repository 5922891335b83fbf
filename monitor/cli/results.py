"""Commands that read results: `edge-monitor status`, `windows` and `results`.

Each prints what it found in words (a drifting node is a line that says so) and exits 0; the
human output of `results` is drawn from the same document `results --json` prints and the
read API answers (monitor.commands.results), so the three never disagree.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

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
        "the verdicts of an analysed window: drift, quality and performance per scope",
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
        help='one scope: "fleet", "site:NAME", "group:NAME" or "node:NAME" (default: all)',
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
    lines.append("  " + _accuracy(model.performance))
    return lines


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
    document = _run_command(
        results.results_document,
        args.model,
        window=args.window,
        since=since,
        scope=args.scope,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    if not document["windows"]:
        print(
            f"{args.model}: no window analysed since {args.since}"
            if since
            else _not_analysed(args.model)
        )
        return 0
    for window in document["windows"]:
        for line in window_lines(document["model"], window, scope=args.scope):
            print(line)
    return 0


def window_lines(model: str, window: dict[str, Any], *, scope: str | None = None) -> list[str]:
    """One window's results document in words: per scope its drift verdict, each drifted
    feature's method, statistic and adjusted p-value, quality issues and performance."""
    lines = [f"{model}: window {window['window_start']} to {window['window_end']}"]
    if not window["scopes"]:
        lines.append(f"  no scope {scope} in this window (scopes are the nodes that sent records)")
    for s in window["scopes"]:
        lines.extend(_scope_lines(s))
    drifting = [s["scope"] for s in window["scopes"] if (s["drift"] or {}).get("drifted")]
    lines.append(
        f"found: drift at {len(drifting)} scope(s): {', '.join(drifting)}"
        if drifting
        else "found: no drift"
    )
    return lines


def _scope_lines(s: dict[str, Any]) -> list[str]:
    drift = s["drift"]
    if drift is None:
        head = f"{s['scope']}: no drift result"
    else:
        verdict = {True: "drifted", False: "no drift", None: "too little data for a verdict"}[
            drift["drifted"]
        ]
        if drift["status"] not in ("ok", "insufficient_data"):
            verdict = drift["status"]
        head = (
            f"{s['scope']}: {verdict} ({drift['n_drifted']} of {drift['n_features']} features, "
            f"{drift['n_rows']} records)"
        )
    lines = [head]
    if drift is not None:
        # How it was judged, when it is not simply this window against the version's reference.
        how = []
        if drift.get("reference") and not str(drift["reference"]).startswith("version "):
            how.append(f"against {drift['reference']}")
        if drift.get("span_start"):
            how.append(f"on the windows pooled since {drift['span_start']}")
        if drift.get("revision", 1) > 1:
            how.append(f"revision {drift['revision']}, {drift['n_late']} late rows")
        if how:
            lines.append(f"  judged {'; '.join(how)}")
        for f in drift["features"]:
            if f["drifted"]:
                lines.append(
                    f"  drift: {f['feature']}: {f['method']} {_num(f['statistic'])} "
                    f"(threshold {_num(f['threshold'])}), adjusted p-value "
                    f"{_p(f['adjusted_p_value'])}"
                )
    quality = s["quality"]
    if quality is not None and quality["issues"]:
        lines.append(f"  quality: issues on {', '.join(quality['issues'])}")
    performance = s["performance"]
    if performance is not None and performance["n_labelled"]:
        figures = [
            f"{name} {performance[name]:.3f}"
            for name in ("accuracy", "f1", "roc_auc", "mae", "rmse")
            if performance[name] is not None
        ]
        coverage = performance["label_coverage"]
        lines.append(
            f"  performance: {', '.join(figures) or performance['status']} "
            f"({performance['n_labelled']} labelled"
            + (f", {coverage:.0%})" if coverage is not None else ")")
        )
    return lines


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
