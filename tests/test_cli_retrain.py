"""`edge-monitor retrain ...`: add hooks, run one by hand and wait for it, read the record of
runs; bad flags are one line and exit 2, refusals one line and exit 1."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.jobs import retrain as job
from monitor.storage import registry
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model

Run = Callable[..., int]


@pytest.fixture
def cli(db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Run:
    """The CLI on a database with model pump (production version 1, candidate 2)."""
    # The promotion gate is another module's: here a produced run stays produced.
    monkeypatch.setattr(job, "PROMOTION", "tests.no_such_promotion_module")
    with begin_write(engine) as conn:
        model_id = add_model(conn, "pump").id
        registry.register_version(conn, model_id, "1", artifact=b"onnx-1", card=None)
        registry.promote(conn, model_id, "1")
        registry.register_version(conn, model_id, "2", artifact=b"onnx-2", card=None)
    return lambda *args: main(["--database-url", db_url, *args])


def command(code: str) -> str:
    return f"{sys.executable} -c {json.dumps(code)}"


PRODUCES_2 = command("import json, sys; json.load(sys.stdin); print(json.dumps({'version': '2'}))")


def test_add_a_command_hook_run_it_and_read_its_record(
    cli: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("retrain", "add-hook", "nightly", "--model", "pump", "--kind", "command",
               "--command", PRODUCES_2, "--cooldown", "0", "--timeout", "10m") == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(
        "hook nightly added: command for model pump (" + sys.executable
    )
    assert cli("retrain", "hooks") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == [
        "NAME", "MODEL", "KIND", "RUNS", "TIMEOUT", "COOLDOWN", "STATE", "SOURCE"
    ]  # fmt: skip
    assert listed[1].startswith("nightly  pump   command")
    assert listed[1].split()[-4:] == ["10m", "0", "enabled", "cli"]

    assert cli("retrain", "run", "nightly", "--wait") == 0
    out = capsys.readouterr().out
    assert out.startswith("retrain run 1 of pump (hook nightly) queued\n")
    assert "  status:   produced (holds its model)\n" in out
    assert "  version:  2\n" in out

    assert cli("retrain", "runs") == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[:6] == ["1", "pump", "nightly", "manual", "produced", "2"]
    assert cli("retrain", "show", "1", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["version"], shown["trigger"]) == ("produced", "2", "manual")
    assert shown["output"] == '{"version": "2"}\n'


def test_a_run_that_fails_exits_non_zero_with_one_line(
    cli: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = command("import sys; print('no labels', file=sys.stderr); sys.exit(4)")
    cli("retrain", "add-hook", "nightly", "--model", "pump", "--kind", "command",
        "--command", failing)  # fmt: skip
    capsys.readouterr()

    assert cli("retrain", "run", "nightly", "--wait") == 1
    captured = capsys.readouterr()
    assert captured.err == "edge-monitor: error: retrain run 1 failed\n"
    assert "    no labels" in captured.out
    assert "    exited with status 4" in captured.out

    # The hook's cooldown (6h by default) refuses another run by hand.
    assert cli("retrain", "run", "nightly") == 1
    assert "is cooling down until" in capsys.readouterr().err


def test_a_second_run_while_one_is_in_flight_is_refused(
    cli: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("retrain", "add-hook", "nightly", "--model", "pump", "--kind", "reference")
    cli("retrain", "add-hook", "other", "--model", "pump", "--kind", "python",
        "--entry-point", "mypipeline.retrain:run")  # fmt: skip
    capsys.readouterr()
    assert cli("retrain", "run", "nightly") == 0
    assert "edge-monitor retrain show 1" in capsys.readouterr().out

    assert cli("retrain", "run", "other") == 1
    assert capsys.readouterr().err == (
        "edge-monitor: error: retrain run 1 of model 'pump' is queued\n"
    )


def test_a_webhook_hook_gets_a_secret_shown_once(
    cli: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("retrain", "add-hook", "pipeline", "--model", "pump", "--kind", "webhook",
               "--url", "https://example.com/retrain") == 0  # fmt: skip
    out = capsys.readouterr().out
    secret = out.splitlines()[1].removeprefix("secret: ")
    assert secret.startswith("whsec_")

    assert cli("retrain", "hooks", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["config"] == {"url": "https://example.com/retrain", "secret_set": True}
    assert secret not in json.dumps(listed)

    # Replaced without --secret: the secret is kept, and not shown again.
    assert cli("retrain", "add-hook", "pipeline", "--model", "pump", "--kind", "webhook",
               "--url", "https://example.com/v2") == 0  # fmt: skip
    assert "secret" not in capsys.readouterr().out

    assert cli("retrain", "remove-hook", "pipeline") == 0
    assert capsys.readouterr().out == "hook pipeline removed (its runs stay recorded)\n"
    assert cli("retrain", "remove-hook", "pipeline") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--kind", "command"], "--kind command needs --command 'PROG ARG...'"),
        (["--kind", "python"], "--kind python needs --entry-point MODULE:FUNCTION"),
        (
            ["--kind", "command", "--command", "x", "--url", "http://a"],
            "--url does not go with --kind command",
        ),
        (
            ["--kind", "reference", "--timeout", "soon"],
            '--timeout: write a duration such as "90s", "30m", "2h", "1d" or "1h30m", not \'soon\'',
        ),
        (
            ["--kind", "python", "--entry-point", "not a function"],
            '--entry-point: must be "package.module:function"',
        ),
        (
            ["--kind", "webhook", "--url", "http://127.0.0.1:9/x"],
            "--url: 127.0.0.1 is a loopback address; allow it with "
            "MONITOR_WEBHOOK_ALLOWED_NETWORKS",
        ),
        (
            ["--kind", "command", "--command", "x", "--env", "novalue"],
            "--env must look like KEY=VALUE, got 'novalue'",
        ),
    ],
)
def test_bad_hook_flags_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    # Named before any database is opened (this one does not even exist).
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["--database-url", url, "retrain", "add-hook", "h", "--model", "pump", *flags]) == 2
    assert capsys.readouterr().err == f"edge-monitor: error: {message}\n"


def test_an_unknown_model_hook_or_run_is_one_line_and_exit_1(
    cli: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("retrain", "add-hook", "h", "--model", "fan", "--kind", "reference") == 1
    assert capsys.readouterr().err == "edge-monitor: error: no model named 'fan'\n"
    assert cli("retrain", "run", "missing") == 1
    assert "no retrain hook named 'missing'" in capsys.readouterr().err
    assert cli("retrain", "show", "42") == 1
    assert capsys.readouterr().err == "edge-monitor: error: no retrain run 42\n"
    assert cli("retrain", "runs", "--model", "fan") == 1
    assert cli("retrain", "runs") == 0
    assert capsys.readouterr().out.endswith("no retrain runs\n")
