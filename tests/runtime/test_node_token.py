"""``edge serve`` takes the node token from a file or ``MONITOR_NODE_TOKEN``, never from its
command line (which every user of the machine can read with ``ps``)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.runtime.credentials import NODE_TOKEN_ENV, TokenError, node_token
from monitor.storage import migrations, models, nodes
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.tables import records

REPO = Path(__file__).resolve().parents[2]
MODEL = "pump-failure"


def edge_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != NODE_TOKEN_ENV}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "edge", "serve", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [["--token", "emn_secret"], ["--token=emn_secret"], ["--token"]],
    ids=["separate", "equals", "bare"],
)
def test_a_token_on_the_command_line_is_refused_saying_what_to_use(args: list[str]) -> None:
    result = edge_serve("--collector", "http://127.0.0.1:9", *args)
    assert result.returncode == 2  # a usage error (README: Exit codes and errors)
    assert result.stderr.strip() == (
        "edge-monitor: error: --token is not accepted (a command line is visible to every user "
        "in ps): use --token-file PATH or the MONITOR_NODE_TOKEN environment variable"
    )
    assert "--token-file" in edge_serve("--help").stdout


def test_token_usage_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    cases = {
        (
            "--collector",
            "http://127.0.0.1:9",
        ): "--collector needs this node's token: --token-file PATH or MONITOR_NODE_TOKEN",
        ("--token-file", str(missing)): "--token-file goes with --collector",
        (
            "--collector",
            "http://127.0.0.1:9",
            "--token-file",
            str(missing),
        ): f"cannot read the token file {missing}: No such file or directory",
    }
    for args, message in cases.items():
        result = edge_serve(*args)
        assert result.returncode == 2, args
        assert result.stderr.strip() == f"edge-monitor: error: {message}", args


def test_node_token_reads_the_file_first_then_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("emn_from-file\n")  # what `echo emn_... > token` writes
    env = {NODE_TOKEN_ENV: "emn_from-env"}
    assert node_token(path, env) == "emn_from-file"
    assert node_token(None, env) == "emn_from-env"
    assert node_token(None, {}) is None
    assert node_token(None, {NODE_TOKEN_ENV: "  "}) is None  # set but blank: as if unset
    for bad in ("", "\n", "emn_one emn_two", "emn_a\nemn_b", "emn_\x00"):
        path.write_text(bad)
        with pytest.raises(TokenError, match="token file"):
            node_token(path, env)
    with pytest.raises(TokenError, match=NODE_TOKEN_ENV):
        node_token(None, {NODE_TOKEN_ENV: "emn_a\temn_b"})


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, str, Engine]]:
    """(collector URL, node token, engine) of a real collector on SQLite."""
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    with begin_write(engine) as conn:
        model = models.add_model(conn, MODEL)
        node, token = nodes.add_node(conn, "edge-1")
        nodes.grant_model(conn, node.id, model.id)
    with BackgroundCollector(Settings(database_url=url, data_dir=tmp_path)) as running:
        yield running.url, token, engine
    engine.dispose()


@pytest.mark.parametrize("source", ["file", "env"])
def test_edge_serve_logs_with_a_token_from_a_file_or_the_environment(
    source: str, collector: tuple[str, str, Engine], tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    url, token, engine = collector
    args = ["--collector", url, "--port", "0", "--poll-interval", "0"]
    env = {k: v for k, v in os.environ.items() if k != NODE_TOKEN_ENV}
    env["MONITOR_LOG_LEVEL"] = "WARNING"
    if source == "file":
        path = tmp_path / "node.token"
        path.write_text(token + "\n")
        path.chmod(0o600)
        args += ["--token-file", str(path)]
    else:
        env[NODE_TOKEN_ENV] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "edge", "serve", "--spool-dir", str(tmp_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving pump-failure 1 on http://127.0.0.1:"), line
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline  # what `ps` shows
        port = int(line.rsplit(":", 1)[1])
        for row in rows[:5]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/predict", body=json.dumps({"features": row}).encode())
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # closing flushes the SDK's records
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    with engine.connect() as conn:  # accepted by the collector: the token was the node's
        assert conn.execute(select(func.count()).select_from(records)).scalar_one() == 5
