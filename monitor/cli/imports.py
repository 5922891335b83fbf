"""History commands: `edge-monitor import` and `edge-monitor analyse`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
    from monitor.cli import _command, _positive

    imp = _command(
        commands,
        "import",
        _import,
        "import history (Parquet or CSV, any size) as records of a model version, exactly once",
    )
    imp.epilog = (
        "Every other column is a feature; proba:<class> or probability_<class> columns are "
        "class probabilities, latency_ms the latency. A record is known by its request id "
        "(without one, by the file's content and its row), so importing a file again, or "
        "again after an interruption, stores only what is missing. Times of any era are "
        "accepted; analyse them with `edge-monitor analyse --from --to`."
    )
    imp.add_argument("file", metavar="FILE", help="a Parquet or CSV file, one record per row")
    imp.add_argument("--model", required=True, help="the model's name (registered; required)")
    imp.add_argument(
        "--version", required=True, help="the model version (created if missing; required)"
    )
    imp.add_argument(
        "--node-column", metavar="C", help="the column naming each row's node (new nodes are made)"
    )
    imp.add_argument(
        "--node",
        metavar="NAME",
        help='the node of every row, without --node-column (default: "import")',
    )
    imp.add_argument(
        "--ts-column",
        metavar="C",
        help='the time column: timestamps, ISO 8601 text or epoch seconds (default: "ts")',
    )
    imp.add_argument(
        "--request-id-column",
        metavar="C",
        help="the request id column, which labels join on and which identifies a record across "
        'files (default: "request_id" if present)',
    )
    imp.add_argument(
        "--label-column", metavar="C", help='the ground truth column (default: "label" if present)'
    )
    imp.add_argument(
        "--prediction-column", metavar="C", help='the prediction column (default: "prediction")'
    )
    imp.add_argument(
        "--batch-rows",
        type=_positive,
        default=10_000,
        metavar="N",
        help="records per stored batch (at most 65535)",
    )

    analyse = _command(
        commands,
        "analyse",
        _analyse,
        "(re)analyse every window of a period, replacing earlier results (safe beside a worker)",
    )
    analyse.add_argument("--model", required=True, help="the model's name (required)")
    analyse.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="T",
        help="start of the period: ISO 8601 date or time, naive = UTC (required)",
    )
    analyse.add_argument(
        "--to",
        dest="end",
        required=True,
        metavar="T",
        help="end of the period (excluded): ISO 8601 date or time, naive = UTC (required)",
    )


def _import(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from monitor.cli import UsageError, _checked_engine, _settings
    from monitor.commands.imports import ImportOptions, import_history
    from monitor.progress import Progress

    path = Path(args.file)
    if not path.is_file():
        why = "not a file" if path.exists() else "no such file"
        raise UsageError(f"cannot read {args.file}: {why}")
    if args.node and args.node_column:
        raise UsageError("--node and --node-column exclude each other")
    settings = _settings()
    options = ImportOptions(
        model=args.model,
        version=args.version,
        node_column=args.node_column,
        node=args.node,
        ts_column=args.ts_column,
        request_id_column=args.request_id_column,
        label_column=args.label_column,
        prediction_column=args.prediction_column,
        batch_rows=args.batch_rows,
        # Stored batches do not straddle the analysis windows, so each window reads its own.
        span=timedelta(minutes=settings.analysis_window_minutes),
        compression=settings.payload_compression,
    )
    bar = Progress("importing", sys.stderr)

    def progress(done: int, total: int, rows: int) -> None:
        bar.show(done / max(total, 1), f"{rows:,} rows")

    engine = _checked_engine()
    try:
        summary = import_history(
            engine, path, options, progress=progress, announce=lambda text: print(text, flush=True)
        )
    finally:
        engine.dispose()
    print(f"imported {path.name}: {summary.line()}")
    return 0


def _analyse(args: argparse.Namespace) -> int:
    from monitor.cli import UsageError, _checked_engine, _progress, _settings
    from monitor.jobs.analysis import Worker
    from monitor.jobs.scheduler import analysis_config
    from monitor.storage import results
    from monitor.storage.models import get_model

    start, end = _moment(args.start, "--from"), _moment(args.end, "--to")
    if end <= start:
        raise UsageError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    settings = _settings()
    engine = _checked_engine()
    try:
        with engine.connect() as conn:
            model = get_model(conn, args.model)
        worker = Worker(engine, analysis_config(settings))
        done = worker.analyse_period(
            model, start, end, progress=_progress("analysing windows", sys.stderr)
        )
        drifted = 0
        with engine.connect() as conn:
            for window in done.analysed:
                stored = results.window(conn, model.id, window.start)
                if stored is None:
                    continue
                line = _drift_line(stored)
                if line:
                    drifted += 1
                    print(f"{window.start.isoformat()} .. {window.end.isoformat()}: {line}")
    finally:
        engine.dispose()
    for window in done.busy:
        print(f"{window.start.isoformat()}: skipped, another worker kept it busy", file=sys.stderr)
    print(f"{len(done.analysed)} window(s) analysed; drift in {drifted}")
    return 1 if done.busy else 0


def _drift_line(stored: Any) -> str | None:
    """Where a window drifted and on which features, or None when it did not."""
    from monitor.schema import FLEET, GROUP, NODE, SITE

    parts = []
    for kind in (FLEET, SITE, GROUP):
        for scope in stored.drifting_scopes(kind):
            features = stored.drifted_features(scope.scope_kind, scope.scope_key)
            name = kind if kind == FLEET else f"{kind} {scope.scope_key}"
            parts.append(f"{name} on {', '.join(features) or 'the prediction'}")
    nodes = [scope.scope_key for scope in stored.drifting_scopes(NODE)]
    if nodes:
        shown = ", ".join(nodes[:5]) + (", ..." if len(nodes) > 5 else "")
        parts.append(f"{len(nodes)} node(s) ({shown})")
    return "drift at " + "; ".join(parts) if parts else None


def _moment(text: str, flag: str) -> datetime:
    """An ISO 8601 date or date-time; naive means UTC."""
    from monitor.cli import UsageError

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not an ISO 8601 date or time (e.g. 2024-03-01 or "
            "2024-03-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
