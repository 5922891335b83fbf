"""`edge-monitor alerts ...`: apply a rules file, list, add and remove rules, read alerts; what
changed and what fires is said in words, --json prints the API's document, and bad input is one
line with a non-zero exit (both databases)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.commands import alerts as alert_commands
from monitor.storage import alerts as alert_store
from monitor.storage import models, webhooks
from monitor.storage.engine import begin_write

EXAMPLE = Path(__file__).parents[1] / "examples" / "alerts.toml"
ERROR = "edge-monitor: error: "
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def cli(db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run a command on the test's database: its exit code, stdout lines and stderr lines."""

    def run(*args: str) -> tuple[int, list[str], list[str]]:
        capsys.readouterr()
        code = main(["--database-url", db_url, *args])
        captured = capsys.readouterr()
        return code, captured.out.splitlines(), captured.err.splitlines()

    return run


@pytest.fixture
def pump(engine: Engine) -> str:
    with begin_write(engine) as conn:
        models.add_model(conn, "pump-failure")
    return "pump-failure"


def test_apply_says_what_it_created_and_then_that_nothing_changed(cli: Any, pump: str) -> None:
    code, out, _ = cli("alerts", "apply", str(EXAMPLE))

    assert code == 0
    assert "created endpoint 'ops-receiver'" in out
    assert "created hook 'pump-retrain'" in out
    assert "created rule 'site drift'" in out
    assert out[-1] == (f"{EXAMPLE}: rules: 11 created; endpoints: 1 created; hooks: 2 created")

    code, out, _ = cli("alerts", "apply", str(EXAMPLE))

    assert (code, out) == (
        0,
        [f"{EXAMPLE}: rules: 11 unchanged; endpoints: 1 unchanged; hooks: 2 unchanged"],
    )


def test_a_dry_run_says_what_would_change(cli: Any, pump: str, engine: Engine) -> None:
    code, out, _ = cli("alerts", "apply", str(EXAMPLE), "--dry-run")

    assert code == 0
    assert "would create rule 'accuracy below 0.85'" in out
    assert out[-1] == "dry run: nothing was changed"
    assert alert_commands.list_rules(engine) == []


def test_a_file_with_problems_lists_each_and_applies_nothing(
    cli: Any, pump: str, tmp_path: Path, engine: Engine
) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[[rule]]\nname = "a"\nmodel = "pump-failure"\nkind = "performance"\n'
        'params = { metric = "acc", below = 0.9 }\n'
        '[[rule]]\nname = "b"\nmodel = "nope"\nkind = "scope_drift"\n'
    )

    code, out, err = cli("alerts", "apply", str(path))

    assert code == 1
    assert out == []
    assert err[0].startswith(f"{path}: rule[1] (a).params.metric: must be one of accuracy")
    assert err[1] == (
        f"{path}: rule[2] (b).model: no model named 'nope' (register it with "
        '"edge-monitor models add nope")'
    )
    assert err[2] == f"{ERROR}{path}: 2 problems (above); nothing was applied"
    assert alert_commands.list_rules(engine) == []


def test_a_file_with_one_problem_is_one_line(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('[[rule]]\nname = "a"\nkind = "scope_drift"\n')

    code, _, err = cli("alerts", "apply", str(path))

    assert code == 1
    assert err == [f"{ERROR}{path}: rule[1] (a).model: names the model whose results it judges"]


def test_rules_lists_each_rule_and_json_is_the_api_document(cli: Any, pump: str) -> None:
    cli("alerts", "apply", str(EXAMPLE))

    code, out, _ = cli("alerts", "rules", "--model", pump)

    assert code == 0
    assert out[0].split() == [
        "NAME", "KIND", "MODEL", "SCOPE", "FIRE", "RESOLVE", "COOLDOWN", "SEVERITY", "PARAMS",
        "SOURCE",
    ]  # fmt: skip
    site = next(line for line in out if line.startswith("site drift "))
    assert site.split()[2:] == [
        "scope_drift", "pump-failure", "site", "2", "of", "3", "3", "of", "3", "30m", "warning",
        "-", "file",
    ]  # fmt: skip
    code, out, _ = cli("alerts", "rules", "--json")
    document = json.loads("\n".join(out))
    assert len(document["rules"]) == 11
    accuracy = next(r for r in document["rules"] if r["name"] == "accuracy below 0.85")
    assert accuracy["params"] == {"metric": "accuracy", "below": 0.85, "confidence": 0.95}
    assert accuracy["hooks"] == ["pump-retrain"]


def test_add_stores_a_rule_from_flags_and_remove_takes_it_away(
    cli: Any, pump: str, engine: Engine
) -> None:
    code, out, _ = cli(
        "alerts", "add", "acc", "--model", pump, "--kind", "performance",
        "--param", "metric=accuracy", "--param", "below=0.8", "--fire", "2 of 3",
        "--cooldown", "30m", "--severity", "critical", "--no-webhooks",
    )  # fmt: skip

    assert code == 0
    assert out == [
        "added rule 'acc': performance of pump-failure, at fleet, fires 2 of 3, resolves 1 of 1, "
        "cooldown 30m, critical"
    ]
    (rule,) = alert_commands.list_rules(engine)
    assert (rule.source, rule.endpoints, rule.params) == (
        "cli",
        (),
        {"metric": "accuracy", "below": 0.8},
    )

    code, out, _ = cli("alerts", "remove", "acc")

    assert (code, out) == (0, ["removed rule 'acc' and its alerts"])
    assert alert_commands.list_rules(engine) == []


def test_add_names_bad_values_by_their_flags_on_one_line(cli: Any, pump: str) -> None:
    code, _, err = cli(
        "alerts", "add", "acc", "--model", pump, "--kind", "performance",
        "--param", "metric=acc", "--fire", "3 of 2",
    )  # fmt: skip

    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(f"{ERROR}--fire: must be a whole number from 1 to fire_n (2); ")
    assert "--param metric: must be one of accuracy" in err[0]


def test_add_refuses_an_endpoint_that_does_not_exist(cli: Any, pump: str) -> None:
    code, _, err = cli(
        "alerts", "add", "d", "--model", pump, "--kind", "scope_drift", "--endpoint", "ghost"
    )

    assert (code, err) == (1, [f"{ERROR}--endpoint: no endpoint named 'ghost'"])


def test_remove_of_an_unknown_rule_is_one_line(cli: Any) -> None:
    code, _, err = cli("alerts", "remove", "ghost")

    assert (code, err) == (1, [f"{ERROR}no alert rule named 'ghost'"])


# --- alerts -----------------------------------------------------------------------------------


def raise_alerts(engine: Engine, model: str) -> tuple[int, int]:
    """A firing alert with one delivered transition, and a resolved one: their ids."""
    alert_commands.add_rule(
        engine, alert_commands.build_rule(
            {"name": "site drift", "model": model, "kind": "scope_drift", "scope": "site"},
            source="api",
        )
    )  # fmt: skip
    with begin_write(engine) as conn:
        rule = alert_commands.alert_rules.rule_by_name(conn, "site drift")
        assert rule is not None and rule.id is not None
        model_id = models.get_model(conn, model).id
        webhooks.upsert_endpoint(
            conn, name="ops", url="https://hooks.example.com/x",
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=NOW,
        )  # fmt: skip
        old = alert_store.open_alert(
            conn, rule_id=rule.id, model_id=model_id, group_key="site:south", severity="warning",
            summary="site south drifts on rpm", subjects=["site:south"], details={},
            window_start=NOW - timedelta(hours=2), now=NOW - timedelta(hours=2),
        )  # fmt: skip
        alert_store.update_alert(
            conn, old, subjects=[], summary="site south no longer drifts", details={},
            window_start=NOW - timedelta(hours=1), now=NOW - timedelta(hours=1), resolve=True,
        )  # fmt: skip
        firing = alert_store.open_alert(
            conn, rule_id=rule.id, model_id=model_id, group_key="site:north", severity="warning",
            summary="site north drifts on vibration_mm_s", subjects=["site:north"],
            details={}, window_start=NOW, now=NOW,
        )  # fmt: skip
        event = alert_store.add_event(
            conn, firing, kind="fired", window_start=NOW, payload={"type": "alert.fired"},
            seq=1, now=NOW,
        )  # fmt: skip
        webhooks.enqueue(
            conn, message_id=event.message_id, event_type="alert.fired", body=b"{}",
            endpoints=None, event_id=event.id, now=NOW,
        )  # fmt: skip
    return firing, old


def test_list_says_which_alerts_fire_in_words(cli: Any, pump: str, engine: Engine) -> None:
    firing, old = raise_alerts(engine, pump)

    code, out, _ = cli("alerts", "list")

    assert code == 0
    assert out == [
        f"#{firing} FIRING (warning) since {NOW.isoformat()}: site north drifts on vibration_mm_s",
        f"#{old} resolved (warning) {(NOW - timedelta(hours=2)).isoformat()} to "
        f"{(NOW - timedelta(hours=1)).isoformat()}: site south no longer drifts",
        "firing: 1 of 2 alert(s) shown",
    ]
    code, out, _ = cli("alerts", "list", "--state", "resolved", "--json")
    assert [a["id"] for a in json.loads("\n".join(out))["alerts"]] == [old]
    code, out, _ = cli("alerts", "list", "--state", "firing", "--model", "pump-failure")
    assert out[-1] == "firing: 1 of 1 alert(s) shown"


def test_no_alerts_is_said_in_words(cli: Any, pump: str) -> None:
    assert cli("alerts", "list", "--state", "firing")[1] == ["no firing alerts"]


def test_show_lists_each_transition_with_its_webhook_id(
    cli: Any, pump: str, engine: Engine
) -> None:
    firing, _ = raise_alerts(engine, pump)
    message_id = alert_store.message_id(firing, 1)

    code, out, _ = cli("alerts", "show", str(firing))

    assert code == 0
    assert out[0].startswith(f"#{firing} FIRING (warning)")
    assert (
        out[1]
        == "  rule 'site drift' (scope_drift), model pump-failure, group site:north, episode 1"
    )
    assert (
        f"    1. fired at {NOW.isoformat()} (window {NOW.isoformat()}), webhook-id {message_id}"
        in out
    )
    assert any(line.strip().startswith("ops: pending") for line in out), out
    code, out, _ = cli("alerts", "show", str(firing), "--json")
    document = json.loads("\n".join(out))
    assert document["events"][0]["message_id"] == message_id
    assert document["events"][0]["deliveries"] == [
        {"endpoint": "ops", "status": "pending", "attempts": 0, "delivered_at": None,
         "last_error": None}
    ]  # fmt: skip
    assert document["state"] == "firing"


def test_show_of_an_unknown_alert_is_one_line(cli: Any) -> None:
    code, _, err = cli("alerts", "show", "999")

    assert (code, err) == (1, [f"{ERROR}no alert 999"])


def test_apply_without_a_file_takes_monitor_alerts_file(
    cli: Any, pump: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli("alerts", "apply")
    assert (code, err) == (2, [f"{ERROR}give the rules FILE (or set MONITOR_ALERTS_FILE)"])

    monkeypatch.setenv("MONITOR_ALERTS_FILE", str(EXAMPLE))
    code, out, _ = cli("alerts", "apply", "--dry-run")

    assert code == 0
    assert out[-2] == f"{EXAMPLE}: rules: 11 created; endpoints: 1 created; hooks: 2 created"


def test_the_worker_applies_the_configured_file_as_it_starts(
    engine: Engine, pump: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.cli.alerts import apply_configured
    from monitor.config import Settings

    apply_configured(engine, Settings(database_url=db_url, alerts_file=EXAMPLE))

    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{EXAMPLE}: rules: 11 created; endpoints: 1 created; hooks: 2 created"
    )
    assert len(alert_commands.list_rules(engine)) == 11


def test_show_says_how_each_delivery_went() -> None:
    from monitor.cli.alerts import show_lines

    delivered = {"endpoint": "ops", "status": "delivered", "attempts": 1, "delivered_at": "t",
                 "last_error": None}  # fmt: skip
    failing = {"endpoint": "pager", "status": "pending", "attempts": 3, "delivered_at": None,
               "last_error": "503 Service Unavailable"}  # fmt: skip
    alert = {
        "id": 7, "state": "resolved", "severity": "critical", "fired_at": "t0",
        "resolved_at": "t1", "summary": "accuracy recovered", "model": None, "rule": "acc",
        "kind": "performance", "group": "fleet", "episode": 2, "subjects": [],
        "first_window_start": None, "last_window_start": None,
        "events": [{"seq": 1, "kind": "fired", "at": "t0", "window_start": None,
                    "message_id": "msg_x", "deliveries": [delivered, failing]}],
    }  # fmt: skip

    assert show_lines(alert) == [
        "#7 resolved (critical) t0 to t1: accuracy recovered",
        "  rule 'acc' (performance), group fleet, episode 2",
        "  transitions:",
        "    1. fired at t0, webhook-id msg_x",
        "       ops: delivered (1 attempt)",
        "       pager: pending (3 attempts), last error: 503 Service Unavailable",
    ]


def test_the_worker_applies_the_configured_rules_file_as_it_starts(
    cli: Any, pump: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_ALERTS_FILE", str(EXAMPLE))
    monkeypatch.setenv("MONITOR_WORKER_METRICS_PORT", "0")

    code, out, _ = cli("worker", "--once")

    assert code == 0
    assert "created rule 'site drift'" in out
    assert f"{EXAMPLE}: rules: 11 created; endpoints: 1 created; hooks: 2 created" in out
    assert out[-1].startswith("caught up")
    assert len(alert_commands.list_rules(engine)) == 11


def test_a_worker_whose_rules_file_has_problems_does_not_start(
    cli: Any, pump: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('[[rule]]\nname = "a"\nmodel = "pump-failure"\nkind = "nonsense"\n')
    monkeypatch.setenv("MONITOR_ALERTS_FILE", str(path))

    code, out, err = cli("worker", "--once")

    assert code == 1
    assert err[-1].startswith(ERROR) and "kind" in err[-1]
    assert not any(line.startswith("caught up") for line in out)
