"""The `edge-monitor` command line: the composition root, importing each part lazily."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from monitor import __version__

Handler = Callable[[argparse.Namespace], int]
_T = TypeVar("_T")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors print one readable line and exit non-zero."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("MONITOR_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    global _overrides
    _overrides = {
        key: value
        for key, value in (("database_url", args.database_url), ("data_dir", args.data_dir))
        if value
    }
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's promise: one readable line, never a traceback
        return _fail(exc)


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
    """A command was given arguments it cannot use."""


def _fail(exc: Exception) -> int:
    from monitor.errors import MonitorError

    if isinstance(exc, MonitorError):
        message = exc.message
    elif isinstance(exc, UsageError):
        message = str(exc)
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
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-monitor", description="Drift and accuracy monitoring for ML models at the edge."
    )
    parser.add_argument("--version", action="version", version=f"edge-monitor {__version__}")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    parser.add_argument("--data-dir", help="data directory (default: ~/.local/share/edge-monitor)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = _command(commands, "serve", _serve, "run the collector (HTTP API)")
    serve.add_argument("--host", help="listen address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from settings: 8750)")
    serve.add_argument("--workers", type=int, help="collector processes")
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
    report.add_argument("--model", required=True, help="the model's name")
    report.add_argument(
        "--window", default="latest", help='the window start (ISO 8601, UTC) or "latest"'
    )
    report.add_argument(
        "--scope",
        default="fleet",
        help='"fleet" (default), "site:NAME", "group:NAME" or "node:NAME"',
    )
    report.add_argument("--out", help="HTML file to write (default: report-<model>-<window>.html)")

    db = commands.add_parser("db", help="database schema migrations").add_subparsers(
        title="db commands", metavar="COMMAND"
    )
    upgrade = _command(db, "upgrade", _db_upgrade, "migrate the database to the newest schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = _command(db, "downgrade", _db_downgrade, "migrate the database back")
    downgrade.add_argument("revision", help='target revision, e.g. "base" or "0001"')
    _command(db, "current", _db_current, "print the database's schema revision")

    nodes = commands.add_parser("nodes", help="edge nodes and their tokens").add_subparsers(
        title="nodes commands", metavar="COMMAND"
    )
    add = _command(nodes, "add", _nodes_add, "register a node and print its token (once)")
    add.add_argument("name")
    add.add_argument("--group", help="node group (e.g. a site or a hardware class)")
    add.add_argument("--site", help="site the node is at")
    add.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
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
    _command(nodes, "list", _nodes_list, "list nodes")
    revoke = _command(nodes, "revoke", _nodes_revoke, "revoke a node's token at once")
    revoke.add_argument("name")
    grant = _command(nodes, "grant", _nodes_grant, "let a node fetch a model's versions")
    grant.add_argument("name")
    grant.add_argument("model")
    withdraw = _command(nodes, "withdraw", _nodes_withdraw, "take a model away from a node")
    withdraw.add_argument("name")
    withdraw.add_argument("model")

    models = commands.add_parser("models", help="monitored models").add_subparsers(
        title="models commands", metavar="COMMAND"
    )
    madd = _command(models, "add", _models_add, "register a model by name")
    madd.add_argument("name")
    madd.add_argument("--description", default="")
    _command(models, "list", _models_list, "list models and their versions")
    register = _command(
        models, "register", _models_register, "register a version: ONNX file, card, reference"
    )
    register.add_argument("name")
    register.add_argument("--onnx", required=True, help="the ONNX model file")
    register.add_argument("--card", required=True, help="the model card (JSON)")
    register.add_argument("--reference", help="reference dataset (.parquet or .csv)")
    register.add_argument("--version", help="default: the card's version")
    versions = _command(models, "versions", _models_versions, "versions, stages and rollout")
    versions.add_argument("name")
    promote = _command(models, "promote", _models_promote, "make a version production")
    promote.add_argument("name")
    promote.add_argument("version")
    canary = _command(models, "canary", _models_canary, "send a candidate to a share of nodes")
    canary.add_argument("name")
    canary.add_argument("version", nargs="?", help="the candidate (omit with --stop)")
    canary.add_argument("--share", type=float, help="share of nodes in (0, 1]")
    canary.add_argument("--stop", action="store_true", help="end the canary")
    pin = _command(models, "pin", _models_pin, "run a version on every node of a group")
    pin.add_argument("name")
    pin.add_argument("version")
    pin.add_argument("--group", required=True)
    unpin = _command(models, "unpin", _models_unpin, "let a group follow production again")
    unpin.add_argument("name")
    unpin.add_argument("--group", required=True)
    rollback = _command(models, "rollback", _models_rollback, "put the previous production back")
    rollback.add_argument("name")
    archive = _command(models, "archive", _models_archive, "retire a version")
    archive.add_argument("name")
    archive.add_argument("version")

    simulate = _command(
        commands, "simulate", _simulate, "run a simulated fleet with a scenario against a collector"
    )
    simulate.add_argument("--nodes", type=int, default=12, help="simulated nodes (default 12)")
    simulate.add_argument("--rate", type=float, default=5.0, help="records/s per node")
    simulate.add_argument(
        "--scenario",
        default="steady",
        choices=["steady", "sensor-drift", "sudden-shift", "quality", "concept-drift"],
    )
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds of real time")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--sites", type=int, default=4)
    simulate.add_argument(
        "--speed", type=float, default=96.0, help="simulated seconds per real second"
    )
    simulate.add_argument("--label-delay", type=float, default=5.0, help="seconds until labels")
    simulate.add_argument("--label-coverage", type=float, default=0.5, help="share labelled")
    simulate.add_argument("--sample-rate", type=float, default=1.0, help="SDK sampling rate")
    simulate.add_argument("--prefix", help="node name prefix (default: sim-<time>)")
    simulate.add_argument("--collector", help="a running collector's URL (default: in-process)")
    simulate.add_argument("--admin-token", help="the collector's admin token (with --collector)")

    demo = _command(
        commands, "demo", _demo, "the core loop on SQLite: collector, simulated fleet, analysis"
    )
    demo.add_argument("--nodes", type=int, default=12, help="simulated nodes (default 12)")
    demo.add_argument("--duration", type=float, default=80.0, help="seconds (default 80)")
    demo.add_argument(
        "--window", type=float, default=20.0, help="analysis window in seconds (default 20)"
    )
    demo.add_argument(
        "--scenario",
        default="sensor-drift",
        choices=["steady", "sensor-drift", "sudden-shift", "quality", "concept-drift"],
    )
    demo.add_argument("--rate", type=float, default=20.0, help="records/s per node")

    edge = commands.add_parser("edge", help="the edge inference runtime").add_subparsers(
        title="edge commands", metavar="COMMAND"
    )
    eserve = _command(edge, "serve", _edge_serve, "serve an ONNX model on local HTTP")
    eserve.add_argument("--model", help="ONNX file (default: the shipped demo model)")
    eserve.add_argument("--card", help="card JSON (default: <model>.card.json, else card.json)")
    eserve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    eserve.add_argument("--port", type=int, default=8760, help="listen port (default 8760)")
    eserve.add_argument("--collector", help="collector URL: log records, poll for new versions")
    eserve.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding this node's token (with --collector; default: $MONITOR_NODE_TOKEN)",
    )
    # Refused with a message saying what to use: a token on the command line shows in `ps`.
    eserve.add_argument("--token", nargs="?", const="", help=argparse.SUPPRESS)
    eserve.add_argument("--sample-rate", type=float, default=1.0, help="share of calls logged")
    eserve.add_argument("--poll-interval", type=float, default=30.0, help="seconds; 0: no polls")
    eserve.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    eserve.add_argument("--spool-dir", help="root of the per-version SDK spools")

    model = commands.add_parser("model", help="model artifacts").add_subparsers(
        title="model commands", metavar="COMMAND"
    )
    build = _command(model, "build-demo", _model_build_demo, "rebuild the demo model's files")
    build.add_argument("--out", default="demo-model", help="output directory (./demo-model)")
    build.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    return parser


def _command(commands: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    return sub


#: The command line's settings flags; applied when a command first needs the settings, so that
#: commands of an edge install (`edge serve`) run without the server extra.
_overrides: dict[str, Any] = {}


def _settings() -> Any:
    from monitor.config import configure

    return configure(**_overrides)


def _engine() -> Any:
    from monitor.storage.engine import make_engine

    settings = _settings()
    return make_engine(
        settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )


def _checked_engine() -> Any:
    from monitor.storage import migrations

    engine = _engine()
    migrations.ensure_at_head(engine)
    return engine


def _serve(args: argparse.Namespace) -> int:
    from monitor.collector.server import serve

    settings = _settings()
    engine = _checked_engine()
    if args.with_worker:
        from monitor.jobs import scheduler

        scheduler.build_scheduler(engine, settings, blocking=False).start()
    else:
        engine.dispose()
    # Worker processes build their app from the environment: hand them the CLI's choices.
    os.environ["MONITOR_DATABASE_URL"] = settings.resolved_database_url
    os.environ["MONITOR_DATA_DIR"] = str(settings.data_dir)
    serve(
        settings,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        workers=args.workers or settings.collector_workers,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from monitor.jobs import scheduler

    settings = _settings()
    engine = _checked_engine()
    schedule = scheduler.build_scheduler(engine, settings, blocking=True)
    analysed = scheduler.catch_up(progress=_progress("analysing windows"))
    print(f"caught up: {analysed} window(s) analysed", file=sys.stderr)
    if args.once:
        engine.dispose()
        return 0
    print(
        f"worker running: windows of {settings.analysis_window_minutes} min, checked every "
        f"{settings.analysis_interval_seconds} s (Ctrl-C stops)",
        file=sys.stderr,
    )
    schedule.start()
    return 0


def _report(args: argparse.Namespace) -> int:
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
    return 0


def _progress(label: str) -> Callable[[int, int], None]:
    """A one-line progress bar on stderr for long CLI work."""

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{label} [{'#' * filled:<{width}}] {done}/{total}{end}")
        sys.stderr.flush()

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
    revision = migrations.current(url)
    head = migrations.head()
    state = "at head" if revision == head else f"head is {head}: run `edge-monitor db upgrade`"
    print(f"{revision or 'none'} ({state})")
    return 0


def _run_command(command: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a shared command (monitor.commands) on the checked database. The engine is disposed
    at once: a pooled connection left to the garbage collector is closed at a random moment."""
    from monitor.storage import migrations

    engine = _engine()
    try:
        migrations.ensure_at_head(engine)
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
    from monitor.commands import nodes

    rows = _run_command(nodes.list_nodes)
    granted = _run_command(nodes.node_models)
    print(f"{'NAME':24} {'GROUP':12} {'SITE':12} {'TOKEN':10} {'STATUS':8} {'LAST SEEN':25} MODELS")
    for n in rows:
        status = "revoked" if n.revoked_at else "active"
        seen = n.last_seen_at.isoformat(timespec="seconds") if n.last_seen_at else "never"
        can = "(labeller)" if n.role == "labeller" else ",".join(granted.get(n.id, [])) or "-"
        print(
            f"{n.name:24} {n.group_name or '-':12} {n.site or '-':12} {n.token_hint + '…':10} "
            f"{status:8} {seen:25} {can}"
        )
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


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _models_versions(args: argparse.Namespace) -> int:
    from monitor.commands import models

    listing = _run_command(models.model_versions, args.name)
    print(f"{'VERSION':12} {'STAGE':11} {'SHA256':14} {'REGISTERED':20} ROLLOUT")
    for row in listing.roles():
        v = row.version
        roles = ["production"] if row.production else []
        if row.canary_share is not None:
            roles.append(f"canary {row.canary_share:.0%}")
        roles += [f"pinned: {group}" for group in row.pinned_groups]
        registered = v.registered_at.isoformat(timespec="seconds") if v.registered_at else "-"
        sha = (v.sha256 or "-")[:12]
        print(f"{v.version:12} {v.stage:11} {sha:14} {registered:20} {', '.join(roles) or '-'}")
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
    if args.nodes < 1 or args.sites < 1:
        raise UsageError("--nodes and --sites must be at least 1")
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
    from monitor.demo import run_demo

    if args.nodes < 1 or args.duration <= 0 or args.window <= 0 or args.rate <= 0:
        raise UsageError("--nodes, --duration, --window and --rate must be positive")
    return run_demo(
        _settings(),
        nodes=args.nodes,
        duration=args.duration,
        window_seconds=args.window,
        scenario=args.scenario,
        rate=args.rate,
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


def _model_build_demo(args: argparse.Namespace) -> int:
    from monitor.demo_model.build import build

    for line in build(args.out, seed=args.seed).lines():
        print(line)
    return 0
