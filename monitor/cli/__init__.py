"""The `edge-monitor` command line: the composition root, importing each part lazily.

Exit codes (README "Exit codes and errors"): 0 done; 1 the command failed (a runtime error,
the database, something not found); 2 a usage error (a bad flag, argument or MONITOR_
setting); 3 the collector cannot listen on its address; 130 interrupted. Every error is one
line on stderr, ``edge-monitor: error: ...``, never a traceback or a usage dump.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from monitor import __version__

Handler = Callable[[argparse.Namespace], int]
_T = TypeVar("_T")

#: Exit codes, one per kind of outcome.
OK, FAILED, USAGE, CANNOT_LISTEN, INTERRUPTED = 0, 1, 2, 3, 130
#: The settings the command line sets by flag, by the flag's name (errors name the flag).
_FLAGS = {"database_url": "--database-url", "data_dir": "--data-dir"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors print one readable line and exit non-zero."""
    try:
        args = _parser().parse_args(argv)
        _start(args)
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print("edge-monitor: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # the CLI's promise: one readable line, never a traceback
        return _fail(exc)


def _start(args: argparse.Namespace) -> None:
    """Take the settings flags, read the settings (a bad one is a usage error) and set up
    logging from them."""
    from monitor.logs import configure_logging

    global _overrides, _loaded
    _overrides = {key: getattr(args, key) for key in _FLAGS if getattr(args, key)}
    _loaded = None
    try:
        import pydantic_settings  # noqa: F401
    except ImportError:  # an edge install (`edge serve`) has no settings: logging's defaults
        configure_logging(None)
        return
    configure_logging(_settings())


#: Which extra brings a missing module.
_EXTRAS = {
    "onnxruntime": "runtime",
    "numpy": "runtime",
    "sklearn": "train",
    "skl2onnx": "train",
    "onnx": "train",
    "streamlit": "dashboard",
    "plotly": "dashboard",
}


class UsageError(Exception):
    """A command was given flags, arguments or settings it cannot use (exit 2)."""


class CommandFailed(Exception):
    """The command cannot do what it was asked, for a reason its message states (exit 1)."""


class CannotListen(Exception):
    """The collector's address cannot be listened on (exit 3)."""


def _fail(exc: Exception) -> int:
    from monitor.errors import MonitorError

    code = FAILED
    if isinstance(exc, MonitorError):
        message = exc.message
    elif isinstance(exc, UsageError | CommandFailed | CannotListen):
        message = str(exc)
        code = {UsageError: USAGE, CannotListen: CANNOT_LISTEN}.get(type(exc), FAILED)
    elif type(exc).__name__ == "SettingsError":  # monitor.config's; not imported on an edge
        message, code = str(exc), USAGE
    else:
        database_errors: tuple[type[Exception], ...] = ()
        try:
            from sqlalchemy.exc import SQLAlchemyError

            database_errors = (SQLAlchemyError,)
        except ImportError:  # an edge install without the server extra
            pass
        if isinstance(exc, database_errors):
            orig = getattr(exc, "orig", None) or exc
            message = f"database error: {str(orig).strip().splitlines()[0]}"
        elif isinstance(exc, ModuleNotFoundError):
            extra = _EXTRAS.get((exc.name or "").split(".")[0], "server")
            message = f"{exc}; install it with: pip install 'edge-monitor[{extra}]'"
        else:
            message = f"{type(exc).__name__}: {exc}"
    print(f"edge-monitor: error: {message}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: a usage error is one line and exit status 2,
    with a pointer to the command's help instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        # argparse reports a flag the command does not know from the top parser; say which
        # command's help lists the flags there are.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            prog = getattr(parsed, "command_prog", self.prog)
            raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see {prog} --help)")
        return parsed


class _HelpFormatter(argparse.HelpFormatter):
    """Every help line shows its flag's default, where the flag has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or "%(default)" in text or not has_default(action):
            return text
        return f"{text} (default: %(default)s)"


def has_default(action: argparse.Action) -> bool:
    """Whether a flag (or optional argument) takes a value of its own when it is not given."""
    if isinstance(
        action, argparse._HelpAction | argparse._VersionAction | argparse._StoreTrueAction
    ):
        return False
    if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
        return False
    # By identity: a default of 0 is a default (0 == False).
    return not (action.default is None or action.default is argparse.SUPPRESS) and not (
        isinstance(action.default, list) and not action.default
    )


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


SCENARIOS = ["steady", "sensor-drift", "sudden-shift", "quality", "concept-drift"]


def _parser() -> argparse.ArgumentParser:
    # Command families that live in their own modules of this package; imported here, as they
    # import this module's helpers.
    from monitor.cli import (
        alerts,
        baselines,
        dashboard,
        imports,
        results,
        retrain,
        webhooks,
        windows,
    )

    parser = _Parser(
        prog="edge-monitor",
        description="Drift and accuracy monitoring for ML models at the edge.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-monitor {__version__}")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL of the database (default: MONITOR_DATABASE_URL, else the SQLite "
        "file edge-monitor.db in the data dir)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: MONITOR_DATA_DIR, else ~/.local/share/edge-monitor)",
    )
    commands = _commands(parser)

    serve = _command(commands, "serve", _serve, "run the collector (HTTP API)")
    serve.add_argument("--host", help="listen address (default: MONITOR_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="listen port (default: MONITOR_PORT, else 8750)")
    serve.add_argument(
        "--workers",
        type=_positive,
        help="collector processes (default: MONITOR_COLLECTOR_WORKERS, else 1)",
    )
    serve.add_argument(
        "--with-worker", action="store_true", help="also run the analysis worker in this process"
    )

    worker = _command(commands, "worker", _worker, "run the scheduled analysis and health jobs")
    worker.add_argument(
        "--once", action="store_true", help="catch up on every due job once, then exit"
    )

    report = _command(
        commands,
        "report",
        _report,
        "write the HTML report of an analysed window: its verdicts, with Evidently's plots",
    )
    report.add_argument("--model", required=True, help="the model's name (required)")
    report.add_argument(
        "--window", default="latest", help='the window start (ISO 8601, UTC) or "latest"'
    )
    report.add_argument(
        "--scope", default="fleet", help='"fleet", "site:NAME", "group:NAME" or "node:NAME"'
    )
    report.add_argument(
        "--out", metavar="FILE", help="HTML file to write (default: report-<model>-<window>.html)"
    )

    db = _commands(_group(commands, "db", "database schema migrations"))
    upgrade = _command(db, "upgrade", _db_upgrade, "migrate the database to the newest schema")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision")
    downgrade = _command(db, "downgrade", _db_downgrade, "migrate the database back")
    downgrade.add_argument("revision", help='target revision, e.g. "base" or "0001"')
    _command(db, "current", _db_current, "print the database's schema revision")

    nodes = _commands(_group(commands, "nodes", "edge nodes and their tokens"))
    add = _command(nodes, "add", _nodes_add, "register a node and print its token (once)")
    add.add_argument("name", help="the node's name, unique in the fleet")
    add.add_argument("--group", help="node group (e.g. a hardware class)")
    add.add_argument("--site", help="site the node is at")
    add.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag (repeatable)"
    )
    add.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="a model whose assignment and artifacts the node may fetch (repeatable)",
    )
    add.add_argument(
        "--labeller",
        action="store_true",
        help="a back-office token that labels any node's records and sends nothing else",
    )
    _command(nodes, "list", _nodes_list, "list nodes: online, degraded, offline, silent or revoked")
    revoke = _command(nodes, "revoke", _nodes_revoke, "revoke a node's token at once")
    revoke.add_argument("name", help="the node's name")
    grant = _command(nodes, "grant", _nodes_grant, "let a node fetch a model's versions")
    grant.add_argument("name", help="the node's name")
    grant.add_argument("model", help="the model's name")
    withdraw = _command(nodes, "withdraw", _nodes_withdraw, "take a model away from a node")
    withdraw.add_argument("name", help="the node's name")
    withdraw.add_argument("model", help="the model's name")

    models = _commands(_group(commands, "models", "monitored models and their versions"))
    madd = _command(models, "add", _models_add, "register a model by name")
    madd.add_argument("name", help="the model's name")
    madd.add_argument("--description", default="", help="what the model does")
    _command(models, "list", _models_list, "list models and their versions")
    register = _command(
        models,
        "register",
        _models_register,
        "register a version: ONNX file and card (and reference), or a reference alone",
    )
    register.add_argument("name", help="the model's name")
    register.add_argument(
        "--onnx", metavar="FILE", help="the ONNX model file, for the bundled runtime (with --card)"
    )
    register.add_argument("--card", metavar="FILE", help="the model card (JSON), with --onnx")
    register.add_argument(
        "--reference",
        metavar="FILE",
        help="reference dataset (.parquet or .csv); alone, a model that runs elsewhere",
    )
    register.add_argument(
        "--version", help="the version's name (default: the card's; required without a card)"
    )
    schema = register.add_argument_group(
        "data schema of a reference alone (inferred from the reference and printed)"
    )
    for flag, what in (
        ("categorical", "features compared category by category (e.g. integer codes)"),
        ("numerical", "features compared as numbers"),
        ("ignore", "columns left out of the analysis (ids, timestamps)"),
    ):
        schema.add_argument(
            f"--{flag}",
            nargs="+",
            action="extend",
            default=[],
            metavar="COL",
            help=f"{what} (repeatable)",
        )
    schema.add_argument(
        "--prediction", metavar="COL", help="prediction column (default: prediction)"
    )
    schema.add_argument("--label", metavar="COL", help="label column (default: label)")
    schema.add_argument(
        "--probability",
        action="append",
        default=[],
        metavar="CLASS=COL",
        help="a class's probability column (repeatable; default: proba:<class>, "
        "probability_<class>)",
    )
    schema.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="the model's task (default: inferred from the prediction)",
    )
    schema.add_argument("--positive-class", metavar="CLASS", help="the class binary metrics score")
    schema.add_argument(
        "--schema", metavar="FILE", help="the whole schema as JSON (see monitor/dataschema.py)"
    )
    versions = _command(models, "versions", _models_versions, "versions, stages and rollout")
    versions.add_argument("name", help="the model's name")
    promote = _command(models, "promote", _models_promote, "make a version production")
    promote.add_argument("name", help="the model's name")
    promote.add_argument("version", help="the version to promote")
    canary = _command(models, "canary", _models_canary, "send a candidate to a share of nodes")
    canary.add_argument("name", help="the model's name")
    canary.add_argument("version", nargs="?", help="the candidate (omit with --stop)")
    canary.add_argument("--share", type=float, help="share of nodes in (0, 1]")
    canary.add_argument("--stop", action="store_true", help="end the canary")
    pin = _command(models, "pin", _models_pin, "run a version on every node of a group")
    pin.add_argument("name", help="the model's name")
    pin.add_argument("version", help="the version the group runs")
    pin.add_argument("--group", required=True, help="the node group (required)")
    unpin = _command(models, "unpin", _models_unpin, "let a group follow production again")
    unpin.add_argument("name", help="the model's name")
    unpin.add_argument("--group", required=True, help="the node group (required)")
    rollback = _command(models, "rollback", _models_rollback, "put the previous production back")
    rollback.add_argument("name", help="the model's name")
    archive = _command(models, "archive", _models_archive, "retire a version")
    archive.add_argument("name", help="the model's name")
    archive.add_argument("version", help="the version to retire")
    windows.add_model_commands(models)
    baselines.add_model_commands(models)
    build = _command(
        models,
        "build-demo",
        _models_build_demo,
        "rebuild the demo model's files (needs edge-monitor[train])",
    )
    build.add_argument("--out", default="demo-model", metavar="DIR", help="output directory")
    build.add_argument("--seed", type=int, default=42, help="random seed")

    imports.add_commands(commands)
    results.add_commands(commands)
    alerts.add_commands(commands)
    webhooks.add_commands(commands)
    retrain.add_commands(commands)
    dashboard.add_commands(commands)

    simulate = _command(
        commands, "simulate", _simulate, "run a simulated fleet with a scenario against a collector"
    )
    simulate.add_argument("--nodes", type=_positive, default=12, help="simulated nodes")
    simulate.add_argument("--rate", type=float, default=5.0, help="records per second per node")
    simulate.add_argument("--scenario", default="steady", choices=SCENARIOS, help="what happens")
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds of real time")
    simulate.add_argument("--seed", type=int, default=0, help="random seed of the fleet's data")
    simulate.add_argument("--sites", type=_positive, default=4, help="sites the nodes are at")
    simulate.add_argument(
        "--speed", type=float, default=96.0, help="simulated seconds per real second"
    )
    simulate.add_argument(
        "--label-delay", type=float, default=5.0, help="seconds until a record's label arrives"
    )
    simulate.add_argument(
        "--label-coverage", type=float, default=0.5, help="share of records labelled"
    )
    simulate.add_argument("--sample-rate", type=float, default=1.0, help="SDK sampling rate")
    simulate.add_argument("--prefix", help="node name prefix (default: sim-<time>)")
    simulate.add_argument(
        "--collector", metavar="URL", help="a running collector's URL (default: in-process)"
    )
    simulate.add_argument(
        "--admin-token", help="the collector's admin token (needed with --collector)"
    )

    demo = _command(
        commands,
        "demo",
        _demo,
        "the whole story on SQLite: simulated fleet, drift, alerts, webhooks, retraining, rollout",
    )
    demo.add_argument("--nodes", type=_positive, default=12, help="simulated nodes")
    demo.add_argument(
        "--duration",
        type=float,
        help="seconds of real time (default: the story until it is told, at most 30 windows, "
        "45 with --fast; 80 for the other scenarios)",
    )
    demo.add_argument(
        "--window", type=float, help="analysis window in seconds (default 15; 6 with --fast)"
    )
    demo.add_argument(
        "--scenario", default="story", choices=[*SCENARIOS, "story"], help="what happens"
    )
    demo.add_argument(
        "--rate", type=float, help="records per second per node (default 20; 25 with --fast)"
    )
    demo.add_argument(
        "--fast",
        action="store_true",
        help="the story in about two minutes; exit 1 naming each milestone that did not happen",
    )

    edge = _commands(_group(commands, "edge", "the edge inference runtime"))
    eserve = _command(edge, "serve", _edge_serve, "serve an ONNX model on local HTTP")
    eserve.add_argument(
        "--model", metavar="FILE", help="ONNX file (default: the shipped demo model)"
    )
    eserve.add_argument(
        "--card", metavar="FILE", help="card JSON (default: <model>.card.json, else card.json)"
    )
    eserve.add_argument("--host", default="127.0.0.1", help="listen address")
    eserve.add_argument("--port", type=_port, default=8760, help="listen port")
    eserve.add_argument(
        "--collector", metavar="URL", help="collector URL: log records, poll for new versions"
    )
    eserve.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding this node's token (with --collector; default: $MONITOR_NODE_TOKEN)",
    )
    # Refused with a message saying what to use: a token on the command line shows in `ps`.
    eserve.add_argument("--token", nargs="?", const="", help=argparse.SUPPRESS)
    eserve.add_argument("--sample-rate", type=float, default=1.0, help="share of calls logged")
    eserve.add_argument(
        "--poll-interval", type=float, default=30.0, help="seconds between registry polls; 0: none"
    )
    eserve.add_argument("--threads", type=_positive, default=1, help="onnxruntime intra-op threads")
    eserve.add_argument(
        "--spool-dir", metavar="DIR", help="root of the per-version SDK spools (default: none)"
    )
    return parser


def _commands(parser: argparse.ArgumentParser) -> Any:
    return parser.add_subparsers(title="commands", metavar="COMMAND", required=True)


def _group(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command group: one noun (``nodes``, ``models``), its commands under it."""
    group: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, formatter_class=_HelpFormatter
    )
    return group


def _command(commands: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, formatter_class=_HelpFormatter
    )
    sub.set_defaults(handler=handler, command_prog=sub.prog)
    return sub


#: The command line's settings flags; applied when a command first needs the settings, so that
#: commands of an edge install (`edge serve`) run without the server extra.
_overrides: dict[str, Any] = {}
_loaded: Any = None


def _settings() -> Any:
    from monitor.config import configure

    global _loaded
    if _loaded is None:
        _loaded = configure(_FLAGS, **_overrides)
    return _loaded


def _engine() -> Any:
    from monitor.storage.engine import make_engine

    settings = _settings()
    return make_engine(
        settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )


def _shown_url(url: str) -> str:
    from monitor.config import hide_password

    return hide_password(url)


def _upgrade_command() -> str:
    """The `db upgrade` command the user needs: with the database flags they gave (a
    password hidden), so that it migrates the database this command looked at."""
    words = ["edge-monitor"]
    if "database_url" in _overrides:
        words += ["--database-url", shlex.quote(_shown_url(_overrides["database_url"]))]
    if "data_dir" in _overrides:
        words += ["--data-dir", shlex.quote(str(_overrides["data_dir"]))]
    return " ".join([*words, "db", "upgrade"])


def _sqlite_file(url: str) -> Path | None:
    from monitor.config import sqlite_file

    return sqlite_file(url)


def _require_database() -> None:
    """Fail, saying how to create it, when the SQLite database does not exist: connecting to
    it would create an empty file (and its directory), and a check must leave nothing behind."""
    path = _sqlite_file(_settings().resolved_database_url)
    if path is not None and not path.exists():
        raise CommandFailed(f'no database at {path}: create it with "{_upgrade_command()}"')


def _ensure_at_head(engine: Any) -> None:
    from monitor.errors import SchemaOutOfDate
    from monitor.storage import migrations

    try:
        migrations.ensure_at_head(engine)
    except SchemaOutOfDate as exc:
        # storage's advice names the bare command; this user may need their flags with it.
        exc.message = exc.message.replace('"edge-monitor db upgrade"', f'"{_upgrade_command()}"')
        raise


def _checked_engine() -> Any:
    _require_database()
    engine = _engine()
    try:
        _ensure_at_head(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _check_listen(host: str, port: int, *, setting: str = "MONITOR_PORT") -> None:
    """CannotListen, in one line, unless ``host:port`` is free: found before uvicorn starts,
    which would otherwise report it in several log lines."""
    import errno
    import socket

    if port == 0:
        return
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {where}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port whose last connections are in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = (
                "the address is in use by another process"
                if exc.errno == errno.EADDRINUSE
                else (exc.strerror or str(exc)).lower()
            )
            raise CannotListen(
                f"cannot listen on {where}: {reason} (choose another with --port or {setting})"
            ) from None


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines of a table whose columns are as wide as their widest cell, two spaces apart."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def _serve(args: argparse.Namespace) -> int:
    settings = _settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    workers = args.workers or settings.collector_workers
    _check_listen(host, port)  # before the web framework's imports: a second, not three
    from monitor.collector.server import serve
    from monitor.logs import uvicorn_log_config

    engine = _checked_engine()
    if args.with_worker:
        from monitor.jobs import scheduler

        _apply_or_dispose(engine, settings)
        scheduler.build_scheduler(engine, settings, blocking=False).start()
    else:
        engine.dispose()
    # Worker processes build their app from the environment: hand them the CLI's choices.
    os.environ["MONITOR_DATABASE_URL"] = settings.resolved_database_url
    os.environ["MONITOR_DATA_DIR"] = str(settings.data_dir)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(
        f"collector: database {_shown_url(settings.resolved_database_url)}; listening on "
        f"http://{where} ({workers} process{'es' if workers > 1 else ''}"
        f"{', with the worker' if args.with_worker else ''})",
        flush=True,
    )
    serve(settings, host=host, port=port, workers=workers, log_config=uvicorn_log_config(settings))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from monitor.jobs import scheduler

    settings = _settings()
    engine = _checked_engine()
    _apply_or_dispose(engine, settings)
    schedule = scheduler.build_scheduler(engine, settings, blocking=True)
    # What the worker tells its operator goes to stdout, so that stderr holds only log
    # records (one JSON object per line with MONITOR_LOG_FORMAT=json).
    analysed = scheduler.catch_up(progress=_progress("analysing windows", sys.stdout))
    print(f"caught up: {analysed} window(s) analysed", flush=True)
    if args.once:
        engine.dispose()
        return 0
    print(
        f"worker running: windows by each model's policy (default "
        f"{settings.analysis_window_minutes} min), checked every "
        f"{settings.analysis_interval_seconds} s (Ctrl-C stops)",
        flush=True,
    )
    schedule.start()
    return 0


def _apply_or_dispose(engine: Any, settings: Any) -> None:
    """Apply MONITOR_ALERTS_FILE as a worker starts; a file with problems stops the start."""
    from monitor.cli.alerts import apply_configured

    try:
        apply_configured(engine, settings)
    except BaseException:
        engine.dispose()
        raise


def _report(args: argparse.Namespace) -> int:
    from monitor.cli.results import report_findings
    from monitor.jobs.reports import write_report

    engine = _checked_engine()
    try:
        with engine.connect() as conn:
            written = write_report(conn, args.model, args.window, args.out, scope=args.scope)
    finally:
        engine.dispose()
    scope = written.scope_kind + (f" {written.scope_key}" if written.scope_key else "")
    print(f"wrote {written.path} (window {written.window_start.isoformat()}, {scope})")
    if written.drifted is None:
        print(f"{scope}: not enough data for a drift verdict")
    elif written.drifted:
        print(f"{scope}: drift detected on {', '.join(written.drifted_features)}")
    else:
        print(f"{scope}: no drift")
    for line in report_findings(scope, written.estimation, written.multivariate):
        print(line)
    return 0


def _progress(label: str, stream: TextIO | None = None) -> Callable[[int, int], None]:
    """Progress of ``done`` out of ``total`` steps (on stderr unless ``stream``): a bar on a
    terminal, plain lines in a log."""
    from monitor.progress import Progress

    bar = Progress(label, stream)

    def show(done: int, total: int) -> None:
        bar.show(done / max(total, 1), f"{done}/{total}")

    return show


def _db_upgrade(args: argparse.Namespace) -> int:
    from monitor.storage import migrations

    url = _settings().resolved_database_url
    migrations.upgrade(url, args.revision)
    print(f"database at revision {migrations.current(url)}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from monitor.storage import migrations

    url = _settings().resolved_database_url
    migrations.downgrade(url, args.revision)
    print(f"database at revision {migrations.current(url) or 'base (empty)'}")
    return 0


def _db_current(_args: argparse.Namespace) -> int:
    from monitor.storage import migrations

    url = _settings().resolved_database_url
    head = migrations.head()
    path = _sqlite_file(url)
    if path is not None and not path.exists():  # asking must not create the file
        print(f'none (no database at {path}: create it with "{_upgrade_command()}")')
        return 0
    revision = migrations.current(url)
    state = "at head" if revision == head else f'head is {head}: run "{_upgrade_command()}"'
    print(f"{revision or 'none'} ({state})")
    return 0


def _run_command(command: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a shared command (monitor.commands) on the checked database. The engine is disposed
    at once: a pooled connection left to the garbage collector is closed at a random moment."""
    engine = _checked_engine()
    try:
        return command(engine, *args, **kwargs)
    finally:
        engine.dispose()


def _nodes_add(args: argparse.Namespace) -> int:
    from monitor.commands import nodes

    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag must look like KEY=VALUE, got {item!r}")
        tags[key] = value
    added = _run_command(
        nodes.add_node,
        args.name,
        group=args.group,
        site=args.site,
        tags=tags,
        role="labeller" if args.labeller else "node",
        model_names=args.model,
    )
    what = "labeller" if args.labeller else "node"
    print(f"{what} {added.node.name} registered; its token (shown only now):", file=sys.stderr)
    print(added.token)
    return 0


def _nodes_list(_args: argparse.Namespace) -> int:
    from datetime import timedelta

    from monitor.cli.results import ago, skew
    from monitor.commands import nodes, results
    from monitor.storage.types import utcnow

    now = utcnow()
    offline_after = timedelta(seconds=_settings().health_offline_after_seconds)
    rows = _run_command(nodes.list_nodes)
    granted = _run_command(nodes.node_models)
    # Online, degraded, offline or silent as judged now (revoked stays revoked); a labeller
    # sends no heartbeats, so it has no such status.
    statuses = {s.name: s.status for s in _run_command(results.node_states, offline_after, now=now)}
    table = []
    for n in rows:
        status = statuses.get(n.name) or ("revoked" if n.revoked_at else "-")
        seen = ago(n.last_seen_at, now)
        clock = skew(n.clock_skew_seconds) if n.clock_skew_seconds is not None else "-"
        can = "(labeller)" if n.role == "labeller" else ",".join(granted.get(n.id, [])) or "-"
        table.append(
            [n.name, n.group_name or "-", n.site or "-", n.token_hint + "…", status, seen, clock,
             can]
        )  # fmt: skip
    headers = ["NAME", "GROUP", "SITE", "TOKEN", "STATUS", "LAST SEEN", "CLOCK SKEW", "MODELS"]
    for line in _table(headers, table):
        print(line)
    return 0


def _nodes_grant(args: argparse.Namespace) -> int:
    from monitor.commands import nodes

    _run_command(nodes.grant_model, args.name, args.model)
    print(f"node {args.name} may fetch model {args.model}")
    return 0


def _nodes_withdraw(args: argparse.Namespace) -> int:
    from monitor.commands import nodes

    had = _run_command(nodes.withdraw_model, args.name, args.model)
    print(
        f"node {args.name} {'may no longer' if had else 'was not registered to'} fetch model "
        f"{args.model}"
    )
    return 0


def _nodes_revoke(args: argparse.Namespace) -> int:
    from monitor.commands import nodes

    _run_command(nodes.revoke_node, args.name)
    print(f"node {args.name} revoked")
    return 0


def _models_add(args: argparse.Namespace) -> int:
    from monitor.commands import models

    model = _run_command(models.add_model, args.name, description=args.description)
    print(f"model {model.name} registered")
    return 0


def _models_list(_args: argparse.Namespace) -> int:
    from monitor.commands import models

    for listing in _run_command(models.list_models):
        print(f"{listing.model.name}: {', '.join(listing.versions) or 'no versions seen yet'}")
    return 0


def _models_register(args: argparse.Namespace) -> int:
    import json

    from monitor.commands import models

    schema_flags = {
        "--categorical": args.categorical,
        "--numerical": args.numerical,
        "--ignore": args.ignore,
        "--prediction": args.prediction,
        "--label": args.label,
        "--probability": args.probability,
        "--task": args.task,
        "--positive-class": args.positive_class,
        "--schema": args.schema,
    }
    if args.onnx is None and args.card is None:
        if args.reference is None:
            raise UsageError("give --onnx and --card, or --reference (see models register --help)")
        if args.version is None:
            raise UsageError("a reference without a card needs --version")
        return _register_reference(args)
    if args.onnx is None or args.card is None:
        raise UsageError("--onnx and --card go together (a reference alone needs neither)")
    given = [flag for flag, value in schema_flags.items() if value]
    if given:
        raise UsageError(
            f"{given[0]} is for a reference alone: with --card, the card gives the schema"
        )
    artifact = _read_file(args.onnx)
    try:
        card = json.loads(_read_file(args.card))
    except ValueError as exc:
        raise UsageError(f"--card {args.card} is not JSON: {exc}") from exc
    reference = _read_file(args.reference) if args.reference else None
    registered = _run_command(
        models.register_version,
        args.name,
        artifact=artifact,
        card=card,
        reference=reference,
        version=args.version,
    )
    rows = registered.reference_rows
    print(
        f"{args.name} {registered.version} registered as a candidate "
        f"(sha256 {registered.sha256}, {registered.size} bytes"
        + (f", {rows} reference rows)" if rows is not None else ", no reference data)")
    )
    return 0


#: The schema choices by the flag that makes them, for error messages.
_SCHEMA_FLAGS = {
    "categorical": "--categorical",
    "numerical": "--numerical",
    "ignore": "--ignore",
    "prediction": "--prediction",
    "label": "--label",
    "probabilities": "--probability",
    "task": "--task",
    "positive_class": "--positive-class",
    "schema": "--schema",
}


def _register_reference(args: argparse.Namespace) -> int:
    """``models register NAME --version V --reference FILE``: a model that runs elsewhere."""
    import json

    from monitor.commands import models
    from monitor.commands.datasets import SchemaChoice, UnknownColumn

    probabilities = {}
    for item in args.probability:
        cls, sep, column = item.partition("=")
        if not sep or not cls or not column:
            raise UsageError(f"--probability must look like CLASS=COLUMN, got {item!r}")
        probabilities[cls] = column
    whole = None
    if args.schema is not None:
        try:
            whole = json.loads(_read_file(args.schema))
        except ValueError as exc:
            raise UsageError(f"--schema {args.schema} is not JSON: {exc}") from exc
    choice = SchemaChoice(
        categorical=tuple(args.categorical),
        numerical=tuple(args.numerical),
        ignore=tuple(args.ignore),
        prediction=args.prediction,
        label=args.label,
        probabilities=probabilities,
        task=args.task,
        positive_class=args.positive_class,
        schema=whole,
        field_names=_SCHEMA_FLAGS,
    )
    reference = _read_file(args.reference)
    try:
        registered = _run_command(
            models.register_reference, args.name, args.version, reference, choice
        )
    except UnknownColumn as exc:
        raise UsageError(exc.message) from exc
    version = registered.version
    print(
        f"{args.name} {version.version} registered as a candidate with reference data only "
        f"({version.reference_rows} rows; a model that runs elsewhere: nodes are not sent it)"
    )
    schema = registered.schema
    print(
        f"task: {schema.task}"
        + (f", classes: {', '.join(map(str, schema.classes))}" if schema.classes else "")
    )
    rows = [[column, role, kind or "-"] for column, role, kind in schema.columns()]
    rows += [[column, "ignored", "-"] for column in registered.ignored]
    for line in _table(["COLUMN", "ROLE", "KIND"], rows):
        print(line)
    return 0


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _models_versions(args: argparse.Namespace) -> int:
    from monitor.commands import models

    listing = _run_command(models.model_versions, args.name)
    table = []
    for row in listing.roles():
        v = row.version
        roles = ["production"] if row.production else []
        if row.canary_share is not None:
            roles.append(f"canary {row.canary_share:.0%}")
        roles += [f"pinned: {group}" for group in row.pinned_groups]
        registered = v.registered_at.isoformat(timespec="seconds") if v.registered_at else "-"
        sha = (v.sha256 or "-")[:12]
        table.append([v.version, v.stage, sha, registered, ", ".join(roles) or "-"])
    for line in _table(["VERSION", "STAGE", "SHA256", "REGISTERED", "ROLLOUT"], table):
        print(line)
    return 0


def _models_promote(args: argparse.Namespace) -> int:
    from monitor.commands import models

    _run_command(models.promote, args.name, args.version)
    print(f"{args.name} {args.version} is now production")
    return 0


def _models_canary(args: argparse.Namespace) -> int:
    from monitor.commands import models

    if args.stop:
        _run_command(models.stop_canary, args.name)
        print(f"{args.name}: canary stopped")
        return 0
    if args.version is None or args.share is None:
        raise UsageError("give VERSION and --share, or --stop")
    _run_command(models.start_canary, args.name, args.version, args.share)
    print(f"{args.name} {args.version} is the canary on {args.share:.0%} of the nodes")
    return 0


def _models_pin(args: argparse.Namespace) -> int:
    from monitor.commands import models

    _run_command(models.pin, args.name, args.version, args.group)
    print(f"group {args.group} runs {args.name} {args.version}")
    return 0


def _models_unpin(args: argparse.Namespace) -> int:
    from monitor.commands import models

    _run_command(models.unpin, args.name, args.group)
    print(f"group {args.group} follows the rollout of {args.name} again")
    return 0


def _models_rollback(args: argparse.Namespace) -> int:
    from monitor.commands import models

    restored = _run_command(models.rollback, args.name).version
    print(f"{args.name} rolled back to {restored.version if restored else '?'}")
    return 0


def _models_archive(args: argparse.Namespace) -> int:
    from monitor.commands import models

    _run_command(models.archive, args.name, args.version)
    print(f"{args.name} {args.version} archived")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from monitor.fleet.simulator import SimulationConfig
    from monitor.simulate import SimulateArgs, run_simulation

    try:
        config = SimulationConfig(
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            speed=args.speed,
            label_delay=args.label_delay,
            label_coverage=args.label_coverage,
            sample_rate=args.sample_rate,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.collector and not args.admin_token:
        raise UsageError("--collector needs --admin-token to register the nodes")
    if not args.collector:
        _require_database()
    return run_simulation(
        _settings(),
        SimulateArgs(
            nodes=args.nodes,
            sites=args.sites,
            scenario=args.scenario,
            seed=args.seed,
            prefix=args.prefix,
            collector=args.collector,
            admin_token=args.admin_token,
            config=config,
        ),
    )


def _demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from monitor.demo import run_demo
    from monitor.demo_story import FAST, StoryConfig, run_story

    for flag in ("duration", "window", "rate"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UsageError("--duration, --window and --rate must be positive")
    if args.fast and args.scenario != "story":
        raise UsageError("--fast tells the story: it takes no other --scenario")
    settings = _settings()
    own = not settings.database_url
    if own:
        # The demo registers its model and a fleet of its own: in a data directory of its own,
        # so that it never adds them to the user's database.
        settings = settings.model_copy(update={"data_dir": settings.data_dir / "demo"})
    if args.scenario == "story":
        config = FAST if args.fast else StoryConfig()
        config = replace(config, nodes=args.nodes)
        if args.window is not None:
            config = replace(config, window_seconds=args.window)
        if args.rate is not None:
            config = replace(config, rate=args.rate)
        if args.duration is not None:
            config = replace(
                config, max_windows=max(1, round(args.duration / config.window_seconds))
            )
        return run_story(settings, config, own_database=own)
    return run_demo(
        settings,
        nodes=args.nodes,
        duration=80.0 if args.duration is None else args.duration,
        window_seconds=20.0 if args.window is None else args.window,
        scenario=args.scenario,
        rate=20.0 if args.rate is None else args.rate,
    )


def _edge_serve(args: argparse.Namespace) -> int:
    from monitor.runtime.credentials import NODE_TOKEN_ENV, TokenError, node_token
    from monitor.runtime.server import PredictionServer, run

    if args.token is not None:
        raise UsageError(
            "--token is not accepted (a command line is visible to every user in ps): use "
            f"--token-file PATH or the {NODE_TOKEN_ENV} environment variable"
        )
    if args.token_file is not None and not args.collector:
        raise UsageError("--token-file goes with --collector")
    token = None
    if args.collector:
        try:
            token = node_token(args.token_file, os.environ)
        except TokenError as exc:
            raise UsageError(str(exc)) from None
        if token is None:
            raise UsageError(
                f"--collector needs this node's token: --token-file PATH or {NODE_TOKEN_ENV}"
            )
    if not 0.0 <= args.sample_rate <= 1.0:
        raise UsageError(f"--sample-rate must be in [0, 1], got {args.sample_rate}")
    model = args.model
    if model is None:
        from monitor.demo_model import paths

        model = str(paths().model)

    def ready(server: PredictionServer) -> None:
        runtime = server.runtime
        print(f"serving {runtime.model_name} {runtime.model_version} on {server.url}", flush=True)

    run(
        model,
        args.card,
        host=args.host,
        port=args.port,
        collector=args.collector,
        token=token,
        sample_rate=args.sample_rate,
        poll_interval=args.poll_interval,
        threads=args.threads,
        spool_dir=args.spool_dir,
        ready=ready,
    )
    return 0


def _models_build_demo(args: argparse.Namespace) -> int:
    from monitor.demo_model.build import build

    for line in build(args.out, seed=args.seed).lines():
        print(line)
    return 0
