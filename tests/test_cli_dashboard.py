"""`edge-monitor dashboard`: it checks the database and its port first (one line each, the
CLI's exit codes), then serves the Streamlit app on the database it was given and says where;
Ctrl-C stops the app with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from monitor import cli
from monitor.storage import migrations

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MONITOR_DATABASE_URL", None)
    return subprocess.run(
        ["edge-monitor", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def start(url: str, port: int, cwd: Path) -> subprocess.Popen[str]:
    """`edge-monitor --database-url URL dashboard --port P`, as a user starts it."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["edge-monitor", "--database-url", url, "dashboard", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_free(port: int) -> None:
    """Nothing listens on ``port`` any more (binding it succeeds)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_without_a_database_it_says_how_to_create_one(tmp_path: Path) -> None:
    # A free port: the default one may be held by another test's dashboard, and a port in use
    # is reported before the missing database.
    done = run("--data-dir", "d", "dashboard", "--port", str(free_port()), cwd=tmp_path)

    assert done.returncode == cli.FAILED
    assert done.stderr.strip() == (
        "edge-monitor: error: no database at d/edge-monitor.db: create it with "
        '"edge-monitor --data-dir d db upgrade"'
    )
    assert not (tmp_path / "d").exists()


def test_a_port_in_use_is_one_line_naming_the_dashboard_s_setting(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = run("--data-dir", "d", "dashboard", "--port", str(port), cwd=tmp_path)

    assert done.returncode == cli.CANNOT_LISTEN
    assert done.stderr.strip() == (
        f"edge-monitor: error: cannot listen on 127.0.0.1:{port}: the address is in use by "
        "another process (choose another with --port or MONITOR_DASHBOARD_PORT)"
    )


def test_it_serves_the_app_on_the_database_and_ctrl_c_stops_both(
    db_url: str, tmp_path: Path
) -> None:
    migrations.upgrade(db_url)
    port = free_port()
    process = start(db_url, port, tmp_path)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert first.startswith("dashboard: starting on database ")
        assert second == f"dashboard: open http://127.0.0.1:{port}/ (Ctrl-C stops)\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.read() == b"ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
            assert b"<html" in r.read().lower()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)

    assert process.returncode == cli.INTERRUPTED
    assert err.strip().splitlines()[-1] == "edge-monitor: interrupted"
    assert_free(port)  # the app went with it


def test_sigterm_stops_the_app_with_it_and_exits_0(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'edge-monitor.db'}"
    migrations.upgrade(url)
    port = free_port()
    process = start(url, port, tmp_path)
    assert process.stdout is not None
    while not process.stdout.readline().startswith("dashboard: open "):
        assert process.poll() is None, process.communicate()

    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)

    assert process.returncode == cli.OK
    assert_free(port)  # a service manager's stop leaves no app behind
