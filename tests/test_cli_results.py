"""`edge-monitor status`, `windows`, `results` and `nodes list`: what was found, in words, after
a real analysis; `results --json` is storage.results' verdicts, the read API's document."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from monitor.cli import main
from monitor.commands import results as read_commands
from monitor.demo_model import MODEL_NAME
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.tables import nodes as nodes_table
from monitor.storage.types import utcnow
from tests.storage.test_readout import (
    WINDOW,
    analyse_fleet,
    document_verdicts,
    stored_verdicts,
)

ERROR = "edge-monitor: error: "


@pytest.fixture
def cli(db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run a command on the test's database; its exit code and stdout lines."""

    def run(*args: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main(["--database-url", db_url, *args])
        return code, capsys.readouterr().out.splitlines()

    return run


def test_status_says_what_drifts_where_and_the_accuracy(cli: Any, engine: Engine) -> None:
    fleet = analyse_fleet(engine)
    latest = fleet.starts[-1]

    code, lines = cli("status")

    assert code == 0
    assert lines[0] == "nodes: 8 silent"
    assert lines[1] == (
        f"{MODEL_NAME}: latest window {latest.isoformat()} to {(latest + WINDOW).isoformat()} "
        "(1600 records, revision 1)"
    )
    drifted = stored_verdicts(engine, fleet.model_id, latest)
    fleet_features = ", ".join(drifted["fleet"]["drifted_features"])
    assert f"  drift: fleet on {fleet_features}" in lines
    for node in fleet.drifting_nodes():
        features = ", ".join(drifted[f"node:{node}"]["drifted_features"])
        assert f"  drift: node {node} on {features}" in lines
    assert f"  nodes drifting: {len(fleet.drifting_nodes())} of 8" in lines
    where = next(line for line in lines if line.startswith("  features drifting: "))
    assert "temperature_c at fleet, 1 site, 2 groups, 2 nodes" in where
    assert lines[-1].startswith("  accuracy: 0.")
    labelled = f"with 800 of 1600 records labelled (50%) in window {latest.isoformat()}"
    assert lines[-1].endswith(labelled)


def test_status_says_when_nothing_is_analysed_yet_and_what_to_do(cli: Any, engine: Engine) -> None:
    with begin_write(engine) as conn:
        models.add_model(conn, "empty-model")

    code, lines = cli("status", "--model", "empty-model")

    assert code == 0
    assert lines == [
        "nodes: none registered (edge-monitor nodes add NAME)",
        'empty-model: no window analysed yet; once records have arrived, run "edge-monitor '
        'worker --once" (or keep "edge-monitor worker" running)',
        "  accuracy: no labels yet (send them with Monitor.log_label or POST /v1/labels)",
    ]


def test_status_names_nodes_whose_clock_is_off(cli: Any, engine: Engine) -> None:
    with begin_write(engine) as conn:
        node_id = nodes.add_node(conn, "press-07")[0].id
        nodes.add_node(conn, "press-08")
        conn.execute(
            update(nodes_table)
            .where(nodes_table.c.id == node_id)
            .values(clock_skew_seconds=-2 * 3600.0, clock_skew_at=utcnow())
        )

    code, lines = cli("status")

    assert code == 0
    assert lines[1].startswith("clock skew: node press-07 sent record times 2.0 h behind (seen ")
    assert not any("press-08" in line for line in lines)
    assert lines[2] == 'models: none yet; register one with "edge-monitor models add NAME"'


def test_windows_lists_the_analysed_windows_newest_first(cli: Any, engine: Engine) -> None:
    fleet = analyse_fleet(engine)
    second, first = fleet.starts[::-1]

    code, lines = cli("windows", "--model", MODEL_NAME)

    assert code == 0
    assert lines[0].split() == [
        "START", "END", "RECORDS", "FLEET", "DRIFT", "NODES", "DRIFTING", "REVISION",
    ]  # fmt: skip
    assert lines[1].split() == [
        second.isoformat(), (second + WINDOW).isoformat(), "1600", "drifted",
        f"{len(fleet.drifting_nodes())}", "of", "8", "1",
    ]  # fmt: skip
    assert lines[2].split() == [
        first.isoformat(), second.isoformat(), "1600", "no", "drift", "0", "of", "8", "1",
    ]  # fmt: skip
    assert lines[3] == "found: fleet drift in 1 of 2 window(s)"
    code, limited = cli("windows", "--model", MODEL_NAME, "--limit", "1")
    assert len(limited) == 3


def test_results_json_is_the_stored_verdicts_and_the_read_apis_document(
    cli: Any, engine: Engine
) -> None:
    fleet = analyse_fleet(engine)

    code, lines = cli("results", "--model", MODEL_NAME, "--json")

    assert code == 0
    printed = json.loads("\n".join(lines))
    (window,) = printed["windows"]
    assert document_verdicts(window) == stored_verdicts(engine, fleet.model_id, fleet.starts[-1])
    assert printed == read_commands.results_document(engine, MODEL_NAME)


def test_results_say_per_scope_what_drifted_with_its_statistic(cli: Any, engine: Engine) -> None:
    fleet = analyse_fleet(engine)
    node = fleet.drifting_nodes()[0]
    document = read_commands.results_document(engine, MODEL_NAME, scope=f"node:{node}")
    (scope,) = document["windows"][0]["scopes"]
    temperature = next(f for f in scope["drift"]["features"] if f["feature"] == "temperature_c")

    code, lines = cli("results", "--model", MODEL_NAME, "--scope", f"node:{node}")

    assert code == 0
    latest = fleet.starts[-1]
    assert lines[0] == (
        f"{MODEL_NAME}: window {latest.isoformat()} to {(latest + WINDOW).isoformat()}"
    )
    assert lines[1].startswith(f"node:{node}: drifted (")
    assert (
        f"  drift: temperature_c: {temperature['method']} {temperature['statistic']:.4g} "
        f"(threshold {temperature['threshold']:.4g}), adjusted p-value "
    ) in "\n".join(lines)
    assert any(line.startswith("  performance: accuracy ") for line in lines)
    found = [line for line in lines if line.startswith("found: ")]
    assert found[0] == f"found: drift at 1 scope(s): node:{node}"


def test_results_of_an_earlier_window_by_a_time_it_holds(cli: Any, engine: Engine) -> None:
    fleet = analyse_fleet(engine, per_node=60)
    first = fleet.starts[0]

    code, lines = cli(
        "results", "--model", MODEL_NAME, "--window", (first + WINDOW / 2).isoformat(),
        "--scope", "fleet",
    )  # fmt: skip

    assert code == 0
    assert lines[0].startswith(f"{MODEL_NAME}: window {first.isoformat()} to ")
    assert next(line for line in lines if line.startswith("found: ")) == "found: no drift"


def test_results_of_a_model_not_analysed_yet(cli: Any, engine: Engine) -> None:
    with begin_write(engine) as conn:
        models.add_model(conn, "m")

    code, lines = cli("results", "--model", "m")
    json_code, json_lines = cli("results", "--model", "m", "--json")

    assert code == 0 and lines[0].startswith("m: no window analysed yet; ")
    assert json_code == 0 and json.loads("\n".join(json_lines)) == {"model": "m", "windows": []}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--window", "yesterday"], 2, "window must be latest or an ISO 8601 time"),
        (["--scope", "planet:mars"], 2, "scope must be fleet, site:NAME, group:NAME or node:NAME"),
        (["--since", "soon"], 2, "since must be an ISO 8601 time"),
        (["--window", "2026-11-20T08:00", "--since", "2026-11-20"], 2, "not allowed with"),
        (["--since", "2026-11-20", "--limit", "1000"], 2, "limit must be 1 to 100"),
    ],
)
def test_bad_values_are_one_line_errors(
    db_url: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    with begin_write(engine) as conn:
        models.add_model(conn, "m")

    assert main(["--database-url", db_url, "results", "--model", "m", *args]) == code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(ERROR) and message in line, line


def test_an_unknown_model_is_an_error(
    db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("status", "windows", "results"):
        assert main(["--database-url", db_url, command, "--model", "ghost"]) == 1
        assert capsys.readouterr().err.strip() == f"{ERROR}no model named 'ghost'"


def test_nodes_list_shows_online_offline_silent_and_revoked(cli: Any, engine: Engine) -> None:
    with begin_write(engine) as conn:
        ids = {name: nodes.add_node(conn, name, site="plant-1")[0].id for name in ("a", "b", "c")}
        nodes.add_node(conn, "d-revoked")
        nodes.revoke_node(conn, "d-revoked")
        nodes.add_node(conn, "erp", role="labeller")
        nodes.touch_node(conn, ids["a"], heartbeat=True)
        conn.execute(
            update(nodes_table)
            .where(nodes_table.c.id == ids["b"])
            .values(
                last_heartbeat_at=utcnow() - timedelta(hours=3),
                last_seen_at=utcnow() - timedelta(hours=3),
                clock_skew_seconds=90.0,
                clock_skew_at=utcnow(),
            )
        )

    code, lines = cli("nodes", "list")

    assert code == 0
    header = lines[0]
    assert header.split() == [
        "NAME", "GROUP", "SITE", "TOKEN", "STATUS", "LAST", "SEEN", "CLOCK", "SKEW", "MODELS",
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}

    def cell(name: str, column: str) -> str:
        start = header.index(column)
        return rows[name][start:].split("  ")[0].strip()

    assert {name: cell(name, "STATUS") for name in rows} == {
        "a": "online",
        "b": "offline",
        "c": "silent",
        "d-revoked": "revoked",
        "erp": "-",
    }
    assert cell("a", "LAST SEEN").endswith(" s ago")
    assert cell("b", "LAST SEEN") == "3 h ago"
    assert cell("c", "LAST SEEN") == "never"
    assert cell("b", "CLOCK SKEW") == "1.5 min ahead"
    assert cell("a", "CLOCK SKEW") == "-"
    assert rows["erp"].split()[-1] == "(labeller)"
