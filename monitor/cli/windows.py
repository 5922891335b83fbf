"""Window policy commands: `edge-monitor models window`."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from monitor.cli import UsageError, _command, _run_command, _settings

#: The flag of each field the shared command names in its errors.
_FLAGS = {name: f"--{name}" for name in ("every", "calendar", "timezone", "rows", "origin")}
_FLAGS["default"] = "--default"


def add_model_commands(models: Any) -> None:
    """Add this module's commands to the ``models`` subparsers."""
    window = _command(
        models,
        "window",
        _models_window,
        "show or set how a model's records are cut into analysis windows",
    )
    window.epilog = (
        "Without a policy flag, prints the model's current policy. A new policy takes over at "
        "the end of the model's last analysed window (from its first record when none was "
        "analysed): analysed windows keep their bounds and results."
    )
    window.add_argument("name", help="the model")
    choice = window.add_mutually_exclusive_group()
    choice.add_argument(
        "--every",
        metavar="LENGTH",
        help="fixed windows of 1 minute to 31 days: 15m, 2h, 7d, 1d12h",
    )
    choice.add_argument(
        "--calendar",
        choices=["hour", "day", "week", "month", "quarter", "year"],
        help="calendar windows (weeks start on Monday) in --timezone",
    )
    choice.add_argument(
        "--rows", metavar="N", help="windows of N records each, fleet-wide, by record time"
    )
    choice.add_argument(
        "--default",
        action="store_true",
        help="back to the settings' default (MONITOR_ANALYSIS_WINDOW_MINUTES)",
    )
    window.add_argument(
        "--timezone", metavar="ZONE", help="IANA time zone of --calendar (default: UTC)"
    )
    window.add_argument(
        "--origin",
        metavar="ISO",
        help="a time the --every windows are aligned to, with its offset, e.g. "
        "2026-01-05T00:00:00+01:00 (default: the Unix epoch)",
    )


def _models_window(args: argparse.Namespace) -> int:
    from monitor.commands import windows
    from monitor.errors import ValidationFailed

    default = timedelta(minutes=_settings().analysis_window_minutes)
    if args.every is None and args.calendar is None and args.rows is None and not args.default:
        if args.timezone is not None or args.origin is not None:
            raise UsageError("--timezone and --origin go with --calendar or --every")
        view = _run_command(windows.window_policy, args.name, default)
        print(f"model {view.model}: {view.describe()}{_since(view)}")
        return 0
    try:
        policy = windows.policy_from_request(
            every=args.every,
            calendar=args.calendar,
            timezone=args.timezone,
            rows=_rows(args.rows),
            origin=args.origin,
            default=args.default,
        )
    except ValidationFailed as exc:
        detail = exc.details[0]
        raise UsageError(f"{_FLAGS[detail['field']]}: {detail['message']}") from None
    view = _run_command(windows.set_window_policy, args.name, policy, default)
    print(f"model {view.model}: {view.describe()}{_since(view)}")
    return 0


def _rows(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--rows: not a whole number: {text!r}") from None


def _since(view: Any) -> str:
    if view.since is None:
        return ", from the first record"
    return f", since {view.since.isoformat()} (where the last window analysed before it ended)"
