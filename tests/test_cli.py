"""The command line: one readable line and a non-zero exit on errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

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


def test_serve_refuses_a_database_that_is_not_at_head(db_url: str) -> None:
    result = cli(db_url, "serve", "--port", "0")

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("edge-monitor: error: database ")
    assert 'run "edge-monitor db upgrade"' in lines[0]


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
    ("args", "message"),
    [
        (["nodes", "add", "cam-1", "--tag", "oops"], "--tag must look like KEY=VALUE, got 'oops'"),
        (["nodes", "revoke", "ghost"], "no node named 'ghost'"),
        (["models", "add", "m", "--description", "x"], None),
    ],
)
def test_errors_are_one_readable_line(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str], args: list[str], message
) -> None:
    code = main(["--database-url", db_url, *args])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0
        assert main(["--database-url", db_url, *args]) == 1
        err = capsys.readouterr().err
        message = "a model named 'm' already exists"
    else:
        assert code == 1
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
    assert (tmp_path / "demo-report.html").exists()


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
    assert run("models", "canary", "pump", "4") == 1
    assert capsys.readouterr().err.strip() == (
        "edge-monitor: error: give VERSION and --share, or --stop"
    )
    assert run("models", "register", "pump", "--onnx", "/nope", "--card", "x") == 1
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
        "model",
    ):
        assert f"    {command} " in listed, command
