"""The command line: one readable line and a non-zero exit on errors, never a traceback
(exit codes: README "Exit codes and errors", tests/test_cli_errors.py)."""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from monitor.cli import main
from monitor.demo_model import paths
from monitor.storage import migrations
from monitor.storage.nodes import node_for_token

REPO = Path(__file__).resolve().parents[1]


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--database-url", db_url, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_serve_refuses_a_database_that_is_not_at_head_and_gives_the_full_command(
    db_url: str, tmp_path: Path
) -> None:
    if db_url.startswith("sqlite"):  # an existing file, at no revision yet
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()
    result = cli(db_url, "serve", "--port", "0")

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("edge-monitor: error: database ")
    assert f'run "edge-monitor --database-url {shlex.quote(db_url)} db upgrade"' in lines[0]


def test_a_check_never_creates_the_database_and_says_the_command_with_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "fresh data"
    run = lambda *args: main(["--data-dir", str(data), *args])  # noqa: E731

    for args in (["serve", "--port", "0"], ["worker", "--once"], ["nodes", "list"]):
        assert run(*args) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"edge-monitor: error: no database at {data / 'edge-monitor.db'}: create it with "
            f'"edge-monitor --data-dir {shlex.quote(str(data))} db upgrade"'
        ]
    assert run("db", "current") == 0
    assert capsys.readouterr().out.startswith("none (no database at ")
    assert not data.exists()

    assert run("db", "upgrade") == 0
    assert run("nodes", "list") == 0


def test_serve_says_which_database_it_uses_without_its_password_and_where_it_listens(
    engine: Engine, db_url: str
) -> None:
    url = make_url(db_url)
    with_password = url.set(password="s3cret") if url.host else url
    shown = with_password.render_as_string(hide_password=True)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "--database-url",
            with_password.render_as_string(hide_password=False),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().strip()
    finally:
        server.terminate()
        server.communicate(timeout=60)

    assert first == f"collector: database {shown}; listening on http://127.0.0.1:0 (1 process)"
    assert "s3cret" not in first


def test_tables_are_aligned_on_their_longest_cell(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *args: main(["--database-url", db_url, *args])  # noqa: E731
    assert run("nodes", "add", "a-node-with-a-name-longer-than-the-old-column") == 0
    assert run("nodes", "add", "b", "--group", "a-group-longer-than-twelve", "--site", "s") == 0
    capsys.readouterr()

    assert run("nodes", "list") == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    header = lines[0]
    for column in ("GROUP", "SITE", "TOKEN", "STATUS", "LAST SEEN", "MODELS"):
        start = header.index(column)
        # Every row's cell starts where its header does, after a blank.
        assert all(line[start - 1] == " " and line[start] != " " for line in lines[1:]), column


def test_db_upgrade_then_current(db_url: str) -> None:
    assert "none" in cli(db_url, "db", "current").stdout

    upgraded = cli(db_url, "db", "upgrade")

    assert upgraded.returncode == 0, upgraded.stderr
    assert cli(db_url, "db", "current").stdout.strip() == f"{migrations.head()} (at head)"


def test_nodes_add_prints_a_working_token_once_and_revoke_kills_it(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", db_url, "nodes", "add", "cam-1", "--group", "north"]) == 0
    token = capsys.readouterr().out.strip()
    with engine.connect() as conn:
        node = node_for_token(conn, token)
    assert node is not None
    assert (node.name, node.group_name) == ("cam-1", "north")

    assert main(["--database-url", db_url, "nodes", "revoke", "cam-1"]) == 0
    with engine.connect() as conn:
        assert node_for_token(conn, token) is None
    assert main(["--database-url", db_url, "nodes", "list"]) == 0
    assert "revoked" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["nodes", "add", "cam-1", "--tag", "oops"],
            2,
            "--tag must look like KEY=VALUE, got 'oops'",
        ),
        (["nodes", "revoke", "ghost"], 1, "no node named 'ghost'"),
        (["models", "add", "m", "--description", "x"], 1, None),
        (
            ["nodes", "list", "--long"],
            2,
            "unrecognized arguments: --long (see edge-monitor nodes list --help)",
        ),
        (
            ["simulate", "--nodes", "0"],
            2,
            "argument --nodes: must be at least 1, got 0 (see edge-monitor simulate --help)",
        ),
    ],
)
def test_errors_are_one_readable_line(
    db_url: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    message: str | None,
) -> None:
    code = main(["--database-url", db_url, *args])
    err = capsys.readouterr().err
    if message is None:  # the second time fails
        assert code == 0
        assert main(["--database-url", db_url, *args]) == status
        err = capsys.readouterr().err
        message = "a model named 'm' already exists"
    else:
        assert code == status
    assert err.strip().splitlines() == [f"edge-monitor: error: {message}"]


def test_an_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"

    assert main(["--database-url", url, "nodes", "list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("edge-monitor: error: database error:")


def test_the_demo_tells_the_core_loop_window_by_window(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "--data-dir",
            str(tmp_path),
            "demo",
            "--nodes",
            "4",
            "--duration",
            "18",
            "--window",
            "6",
            "--rate",
            "40",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr
    windows = [line for line in result.stdout.splitlines() if line.startswith("  window ")]
    assert len(windows) >= 2, result.stdout
    assert all("records" in line and "accuracy" in line for line in windows)
    assert "records delivered exactly once" in result.stdout
    assert "dropped: none" in result.stdout
    # The demo keeps to a data directory of its own: the user's database is never touched.
    assert (tmp_path / "demo" / "demo-report.html").exists()
    assert (tmp_path / "demo" / "edge-monitor.db").exists()
    assert not (tmp_path / "edge-monitor.db").exists()


def test_register_and_roll_out_a_version_from_files(
    db_url: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    card = json.loads(paths().card.read_text())
    (tmp_path / "card.json").write_text(json.dumps({**card, "name": "pump", "version": "4"}))
    (tmp_path / "reference.csv").write_text("temperature,rpm\n70.1,1450\n71.3,1500\n")
    run = lambda *args: main(["--database-url", db_url, *args])  # noqa: E731

    assert run("models", "add", "pump") == 0
    assert (
        run(
            "models",
            "register",
            "pump",
            "--onnx",
            str(tmp_path / "model.onnx"),
            "--card",
            str(tmp_path / "card.json"),
            "--reference",
            str(tmp_path / "reference.csv"),
        )
        == 0
    )
    assert "pump 4 registered as a candidate" in capsys.readouterr().out
    assert run("models", "promote", "pump", "4") == 0
    assert run("models", "pin", "pump", "4", "--group", "north") == 0
    capsys.readouterr()
    assert run("models", "versions", "pump") == 0

    listing = capsys.readouterr().out.splitlines()[1]
    assert listing.split()[:2] == ["4", "production"]
    assert "production, pinned: north" in listing
    assert run("models", "canary", "pump", "4") == 2
    assert capsys.readouterr().err.strip() == (
        "edge-monitor: error: give VERSION and --share, or --stop"
    )
    assert run("models", "register", "pump", "--onnx", "/nope", "--card", "x") == 2
    assert "cannot read /nope" in capsys.readouterr().err


def test_every_command_is_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out

    for command in (
        "serve",
        "worker",
        "report",
        "db",
        "nodes",
        "models",
        "simulate",
        "demo",
        "edge",
    ):
        assert f"    {command} " in listed, command
    # One group per noun: the demo model is built under `models`.
    assert "    model " not in listed
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    assert "    build-demo\n" in capsys.readouterr().out
