"""The dashboard command: `edge-monitor dashboard`."""

from __future__ import annotations

import argparse
import importlib.util
import signal
from typing import Any


class _Stopped(Exception):
    """SIGTERM (a service manager stopping the dashboard): a clean stop, exit 0."""


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
    from monitor.cli import _command, _port

    dashboard = _command(
        commands,
        "dashboard",
        _dashboard,
        "run the fleet-health dashboard (Streamlit) on the database",
    )
    dashboard.add_argument("--host", help="listen address (default: MONITOR_HOST, else 127.0.0.1)")
    dashboard.add_argument(
        "--port", type=_port, help="listen port (default: MONITOR_DASHBOARD_PORT, else 8752)"
    )


def _dashboard(args: argparse.Namespace) -> int:
    from monitor.cli import CommandFailed, _check_listen, _checked_engine, _settings, _shown_url

    if importlib.util.find_spec("streamlit") is None:
        raise CommandFailed("the dashboard needs Streamlit: pip install 'edge-monitor[dashboard]'")
    settings = _settings()
    host = args.host or settings.host
    port = settings.dashboard_port if args.port is None else args.port
    _check_listen(host, port, setting="MONITOR_DASHBOARD_PORT")
    _checked_engine().dispose()  # the database is there and current, or one line says why

    from monitor.dashboards import server

    url = settings.resolved_database_url
    print(f"dashboard: starting on database {_shown_url(url)}", flush=True)
    dashboard = server.start(url, host=host, port=port)
    # Stopped by a service manager, the app must go too (it would outlive this process).
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        try:
            dashboard.wait_ready()
        except RuntimeError as exc:
            raise CommandFailed(str(exc)) from None
        print(f"dashboard: open {dashboard.url} (Ctrl-C stops)", flush=True)
        code = dashboard.process.wait()
    except _Stopped:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        dashboard.stop()
    if code != 0:
        raise CommandFailed(f"the dashboard stopped (exit {code})")
    return 0


def _stop(_signum: int, _frame: Any) -> None:
    raise _Stopped
