"""The `edge-monitor` command line: the composition root, importing each part lazily."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from monitor import __version__

Handler = Callable[[argparse.Namespace], int]


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
    try:
        _configure(args)
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's promise: one readable line, never a traceback
        return _fail(exc)


class UsageError(Exception):
    """A command was given arguments it cannot use."""


def _configure(args: argparse.Namespace) -> None:
    from monitor.config import configure

    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    configure(**overrides)


def _fail(exc: Exception) -> int:
    from monitor.errors import MonitorError

    if isinstance(exc, MonitorError):
        message = exc.message
    elif isinstance(exc, UsageError):
        message = str(exc)
    else:
        try:
            from sqlalchemy.exc import SQLAlchemyError
        except ImportError:  # an edge install without the server extra
            SQLAlchemyError = ()  # type: ignore[assignment]
        if isinstance(exc, SQLAlchemyError):
            orig = getattr(exc, "orig", None) or exc
            message = f"database error: {str(orig).strip().splitlines()[0]}"
        elif isinstance(exc, ModuleNotFoundError):
            message = f"{exc}; install the server extra: pip install 'edge-monitor[server]'"
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
    serve.add_argument("--workers", type=int, help="collector processes (PostgreSQL only)")

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
    _command(nodes, "list", _nodes_list, "list nodes")
    revoke = _command(nodes, "revoke", _nodes_revoke, "revoke a node's token at once")
    revoke.add_argument("name")

    models = commands.add_parser("models", help="monitored models").add_subparsers(
        title="models commands", metavar="COMMAND"
    )
    madd = _command(models, "add", _models_add, "register a model by name")
    madd.add_argument("name")
    madd.add_argument("--description", default="")
    _command(models, "list", _models_list, "list models and their versions")

    demo = _command(
        commands, "demo", _demo, "run the collector on SQLite and ship synthetic records to it"
    )
    demo.add_argument("--nodes", type=int, default=3, help="simulated nodes (default 3)")
    demo.add_argument("--records", type=int, default=2_000, help="records per node")
    demo.add_argument("--port", type=int, default=0, help="collector port (default: any free)")
    return parser


def _command(commands: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    return sub


def _settings() -> Any:
    from monitor.config import get_settings

    return get_settings()


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
    import uvicorn

    settings = _settings()
    _checked_engine().dispose()
    # Worker processes build their app from the environment: hand them the CLI's choices.
    os.environ["MONITOR_DATABASE_URL"] = settings.resolved_database_url
    os.environ["MONITOR_DATA_DIR"] = str(settings.data_dir)
    workers = args.workers or settings.collector_workers
    uvicorn.run(
        "monitor.collector.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        workers=workers,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


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


def _nodes_add(args: argparse.Namespace) -> int:
    from monitor.storage import nodes
    from monitor.storage.engine import begin_write

    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag must look like KEY=VALUE, got {item!r}")
        tags[key] = value
    with begin_write(_checked_engine()) as conn:
        node, token = nodes.add_node(
            conn, args.name, group_name=args.group, site=args.site, tags=tags
        )
    print(f"node {node.name} registered; its token (shown only now):", file=sys.stderr)
    print(token)
    return 0


def _nodes_list(_args: argparse.Namespace) -> int:
    from monitor.storage import nodes

    with _checked_engine().connect() as conn:
        rows = nodes.list_nodes(conn)
    print(f"{'NAME':24} {'GROUP':12} {'SITE':12} {'TOKEN':10} {'STATUS':8} LAST SEEN")
    for n in rows:
        status = "revoked" if n.revoked_at else "active"
        seen = n.last_seen_at.isoformat(timespec="seconds") if n.last_seen_at else "never"
        print(
            f"{n.name:24} {n.group_name or '-':12} {n.site or '-':12} {n.token_hint + '…':10} "
            f"{status:8} {seen}"
        )
    return 0


def _nodes_revoke(args: argparse.Namespace) -> int:
    from monitor.storage import nodes
    from monitor.storage.engine import begin_write

    with begin_write(_checked_engine()) as conn:
        nodes.revoke_node(conn, args.name)
    print(f"node {args.name} revoked")
    return 0


def _models_add(args: argparse.Namespace) -> int:
    from monitor.storage import models
    from monitor.storage.engine import begin_write

    with begin_write(_checked_engine()) as conn:
        model = models.add_model(conn, args.name, description=args.description)
    print(f"model {model.name} registered")
    return 0


def _models_list(_args: argparse.Namespace) -> int:
    from monitor.storage import models

    with _checked_engine().connect() as conn:
        for model in models.list_models(conn):
            versions = ", ".join(models.list_versions(conn, model.id)) or "no versions seen yet"
            print(f"{model.name}: {versions}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo

    return run_demo(_settings(), nodes=args.nodes, records_per_node=args.records, port=args.port)
