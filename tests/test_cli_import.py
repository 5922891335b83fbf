"""`edge-monitor import`: what it prints, how it refuses bad input, and an import killed
midway that a re-run completes without a duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.commands import models
from monitor.storage.models import get_model
from monitor.storage.records import count_records

REPO = Path(__file__).resolve().parents[1]
ERROR = "edge-monitor: error: "


def write_history(path: Path, rows: int) -> None:
    rng = np.random.default_rng(3)
    start = pd.Timestamp(datetime(1995, 1, 1, tzinfo=UTC))
    pd.DataFrame(
        {
            "ts": start + pd.to_timedelta(np.arange(rows) * 2, unit="s"),
            "node": rng.choice(["a", "b"], rows),
            "temperature": rng.normal(70, 3, rows),
            "vibration": rng.normal(0.2, 0.05, rows),
            "prediction": rng.choice(["ok", "fail"], rows),
        }
    ).to_parquet(path)


def records_of(engine: Engine, model: str) -> int:
    with engine.connect() as conn:
        return count_records(conn, model_id=get_model(conn, model).id)


@pytest.fixture
def pump(engine: Engine) -> str:
    models.add_model(engine, "pump")
    return "pump"


def test_import_prints_its_steps_and_what_it_stored(
    engine: Engine, db_url: str, pump: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.parquet"
    write_history(path, 500)
    args = ["--database-url", db_url, "import", str(path), "--model", pump, "--version", "1"]

    assert main([*args, "--node-column", "node"]) == 0
    first = capsys.readouterr()
    assert main([*args, "--node-column", "node"]) == 0
    second = capsys.readouterr()

    lines = first.out.splitlines()
    assert lines[0].startswith("history.parquet: Parquet, columns: ts=ts; prediction=prediction")
    assert lines[1].startswith("created 2 node(s) without a usable token")
    assert lines[-1] == (
        "imported history.parquet: 500 rows read, 500 records stored, 0 duplicates skipped, "
        "0 labels stored, created 2 node(s); ts 1995-01-01T00:00:00+00:00 to "
        "1995-01-01T00:16:38+00:00"
    )
    assert "importing: 500 rows" in first.err  # progress, one line per step off a terminal
    assert "500 rows read, 0 records stored, 500 duplicates skipped" in second.out
    assert records_of(engine, pump) == 500


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.parquet", "--model", "pump"], 2, "cannot read missing.parquet: no such file"),
        (["{file}", "--model", "nope"], 1, "no model named 'nope'"),
        (["{file}", "--model", "pump", "--ts-column", "when"], 1, "--ts-column 'when': no such"),
        (["{file}", "--model", "pump", "--node", "x", "--node-column", "node"], 2, "exclude"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    engine: Engine,
    db_url: str,
    pump: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    path = tmp_path / "history.parquet"
    write_history(path, 10)
    given = [arg.replace("{file}", str(path)) for arg in args]

    status = main(["--database-url", db_url, "import", *given, "--version", "1"])

    err = capsys.readouterr().err.strip().splitlines()
    assert status == code
    assert len(err) == 1 and err[0].startswith(ERROR), err
    assert message in err[0]


def test_an_import_killed_midway_completes_on_a_rerun_without_duplicates(
    engine: Engine, db_url: str, pump: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = 140_000  # three chunks: it is killed once the first has committed
    path = tmp_path / "history.parquet"
    write_history(path, rows)
    command = [sys.executable, "-m", "monitor", "import", str(path), "--model", pump]
    command += ["--version", "1", "--node-column", "node"]
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url}

    running = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while records_of(engine, pump) == 0 and running.poll() is None:
            time.sleep(0.01)  # until its first chunk is committed
        running.send_signal(signal.SIGKILL)
    finally:
        running.wait()
    stored_when_killed = records_of(engine, pump)
    rerun = main(["--database-url", db_url, *command[3:]])

    assert running.returncode == -signal.SIGKILL
    assert 0 < stored_when_killed < rows
    assert rerun == 0
    assert (
        f"{rows:,} rows read, {rows - stored_when_killed:,} records stored, "
        f"{stored_when_killed:,} duplicates skipped" in capsys.readouterr().out
    )
    assert records_of(engine, pump) == rows
