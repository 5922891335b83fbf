"""Baseline commands: `edge-monitor models baseline`, what each node (or site) of a model is
judged against (monitor.jobs.baselines)."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_commands(models: Any) -> None:
    """Add this module's commands to the ``models`` subparsers."""
    from monitor.cli import _command, _positive

    baseline = _command(
        models,
        "baseline",
        _models_baseline,
        "judge each node (or site) against its own first days or rows, or show the setting",
    )
    baseline.add_argument("name", help="the model's name")
    baseline.add_argument(
        "--per",
        choices=["node", "site"],
        help="give each node (or each site) its own baseline: the first --days or --rows of "
        "each version on it",
    )
    size = baseline.add_mutually_exclusive_group()
    size.add_argument(
        "--days", type=_positive, metavar="N", help="the baseline is the first N days"
    )
    size.add_argument(
        "--rows", type=_positive, metavar="N", help="the baseline is the first N records"
    )
    baseline.add_argument(
        "--shared",
        action="store_true",
        help="judge every scope against the version's reference data again (the default)",
    )


def _models_baseline(args: argparse.Namespace) -> int:
    from monitor.cli import UsageError, _run_command

    sized = args.days is not None or args.rows is not None
    if args.shared and (args.per or sized):
        raise UsageError("--shared takes no --per, --days or --rows")
    if args.per and not sized:
        raise UsageError("--per needs --days N or --rows N")
    if sized and not args.per:
        raise UsageError("--days and --rows need --per node or --per site")
    if args.shared:
        _run_command(_set, args.name, None)
        print(f"model {args.name}: every scope is judged against its version's reference data")
        return 0
    if args.per:
        from monitor.errors import ValidationFailed
        from monitor.storage.baselines import BaselineSetting

        try:
            setting = BaselineSetting(args.per, args.days, args.rows)
        except ValidationFailed as exc:  # out of bounds: a bad flag, as argparse's own checks
            flag = "--days" if args.days is not None else "--rows"
            raise UsageError(f"{flag}: {exc.message}") from exc
        _run_command(_set, args.name, setting)
        print(f"model {args.name}: baseline {setting.describe()} of each version")
        return 0
    current = _run_command(_get, args.name)
    if current is None:
        print(f"model {args.name}: every scope is judged against its version's reference data")
    else:
        print(f"model {args.name}: baseline {current.describe()} of each version")
    return 0


def _set(engine: Any, name: str, setting: Any) -> None:
    """Store a model's baseline setting (None: the version's reference)."""
    from monitor.storage.baselines import set_baseline
    from monitor.storage.engine import begin_write
    from monitor.storage.models import get_model

    with begin_write(engine) as conn:
        set_baseline(conn, get_model(conn, name).id, setting)


def _get(engine: Any, name: str) -> Any:
    from monitor.storage.baselines import get_baseline
    from monitor.storage.models import get_model

    with engine.connect() as conn:
        return get_baseline(conn, get_model(conn, name).id)
