"""`edge-monitor models baseline`: give each node (or site) of a model its own baseline, go
back to the version's reference, show the setting; bad flags are one line and exit 2."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.storage.baselines import BaselineSetting, get_baseline
from monitor.storage.models import get_model


def setting(engine: Engine, name: str) -> BaselineSetting | None:
    with engine.connect() as conn:
        return get_baseline(conn, get_model(conn, name).id)


def test_set_show_and_clear_a_baseline(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *args: main(["--database-url", db_url, *args])  # noqa: E731
    assert run("models", "add", "press") == 0
    capsys.readouterr()

    assert run("models", "baseline", "press") == 0
    assert capsys.readouterr().out == (
        "model press: every scope is judged against its version's reference data\n"
    )
    assert run("models", "baseline", "press", "--per", "node", "--days", "7") == 0
    assert capsys.readouterr().out == (
        "model press: baseline per node, first 7 days of each version\n"
    )
    assert setting(engine, "press") == BaselineSetting("node", days=7)
    assert run("models", "baseline", "press", "--per", "site", "--rows", "1000") == 0
    capsys.readouterr()
    assert run("models", "baseline", "press") == 0
    assert capsys.readouterr().out == (
        "model press: baseline per site, first 1,000 rows of each version\n"
    )
    assert run("models", "baseline", "press", "--shared") == 0
    assert "every scope is judged against its version's reference" in capsys.readouterr().out
    assert setting(engine, "press") is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--per", "node"], "--per needs --days N or --rows N"),
        (["--days", "3"], "--days and --rows need --per node or --per site"),
        (["--shared", "--per", "node", "--days", "3"], "--shared takes no --per, --days or --rows"),
        (["--per", "node", "--days", "400"], "--days: days must be a whole number from 1 to 366"),
        (
            ["--per", "node", "--days", "0"],
            "argument --days: must be at least 1, got 0 (see edge-monitor models baseline --help)",
        ),
        (
            ["--per", "group", "--days", "3"],
            "argument --per: invalid choice: 'group' (choose from 'node', 'site') "
            "(see edge-monitor models baseline --help)",
        ),
        (
            ["--per", "node", "--days", "3", "--rows", "9"],
            "argument --rows: not allowed with argument --days "
            "(see edge-monitor models baseline --help)",
        ),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    db_url: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    assert main(["--database-url", db_url, "models", "add", "press"]) == 0
    capsys.readouterr()

    assert main(["--database-url", db_url, "models", "baseline", "press", *flags]) == 2
    assert capsys.readouterr().err.splitlines() == [f"edge-monitor: error: {message}"]
    assert setting(engine, "press") is None


def test_an_unknown_model_is_one_line_and_exit_1(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    for flags in ([], ["--per", "node", "--days", "7"], ["--shared"]):
        assert main(["--database-url", db_url, "models", "baseline", "nope", *flags]) == 1
        assert capsys.readouterr().err.splitlines() == [
            "edge-monitor: error: no model named 'nope'"
        ]
