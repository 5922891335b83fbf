"""Applying a rules file keeps the stored rules, endpoints and hooks of the file in step with
it, in one transaction, and leaves those added by the CLI or the API alone (both databases)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.alerts.rules import Rule
from monitor.alerts.rulesfile import RulesFileInvalid
from monitor.commands import alerts
from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage import alert_rules, models, retrains, webhooks
from monitor.storage.engine import begin_write

EXAMPLE = Path(__file__).parents[2] / "examples" / "alerts.toml"
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

SMALL = """
[[endpoint]]
name = "ops"
url = "https://hooks.example.com/ops"

[[hook]]
name = "retrain"
model = "pump-failure"
kind = "webhook"
url = "https://ci.example.com/retrain"

[[rule]]
name = "site drift"
model = "pump-failure"
kind = "scope_drift"
scope = "site"
fire = "2 of 3"
endpoints = ["ops"]

[[rule]]
name = "accuracy"
model = "pump-failure"
kind = "performance"
params = { metric = "accuracy", below = 0.8 }
hooks = ["retrain"]
"""


@pytest.fixture
def pump(engine: Engine) -> str:
    with begin_write(engine) as conn:
        models.add_model(conn, "pump-failure")
    return "pump-failure"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    return path


def stored(
    engine: Engine,
) -> tuple[dict[str, Rule], dict[str, webhooks.Endpoint], dict[str, retrains.Hook]]:
    with engine.connect() as conn:
        return (
            {r.name: r for r in alert_rules.list_rules(conn)},
            {e.name: e for e in webhooks.list_endpoints(conn)},
            {h.name: h for h in retrains.list_hooks(conn)},
        )


def test_applying_the_example_file_creates_everything_it_defines(engine: Engine, pump: str) -> None:
    applied = alerts.apply_file(engine, EXAMPLE, now=NOW)

    rules, endpoints, hooks = stored(engine)
    assert sorted(applied.rules.created) == sorted(rules) and len(rules) == 11
    assert applied.endpoints.created == ["ops-receiver"]
    assert sorted(applied.hooks.created) == ["pump-pipeline", "pump-retrain"]
    assert {r.source for r in rules.values()} == {"file"}
    assert endpoints["ops-receiver"].secret == SECRET
    assert hooks["pump-pipeline"].enabled is False
    assert rules["site drift"].fire_m == 2 and rules["site drift"].cooldown_seconds == 1800


def test_applying_the_same_file_again_changes_nothing_and_keeps_generated_secrets(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    path = write(tmp_path, SMALL)
    first = alerts.apply_file(engine, path, now=NOW)
    _, endpoints, hooks = stored(engine)
    secret = endpoints["ops"].secret
    hook_secret = hooks["retrain"].config["secret"]

    again = alerts.apply_file(engine, path, now=NOW)

    # Shown once, so that a receiver can verify what it is sent.
    assert first.notes == [
        f"endpoint ops: generated signing secret {secret}",
        f"hook retrain: generated signing secret {hook_secret}",
    ]
    assert secret.startswith("whsec_") and hook_secret.startswith("whsec_")
    assert not again.changed
    assert sorted(again.rules.unchanged) == ["accuracy", "site drift"]
    assert again.endpoints.unchanged == ["ops"] and again.hooks.unchanged == ["retrain"]
    assert again.notes == []
    _, endpoints, hooks = stored(engine)
    assert endpoints["ops"].secret == secret
    assert hooks["retrain"].config["secret"] == hook_secret


def test_an_edited_rule_is_updated_and_the_rest_is_unchanged(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    alerts.apply_file(engine, write(tmp_path, SMALL), now=NOW)

    edited = SMALL.replace('fire = "2 of 3"', 'fire = "3 of 4"\ncooldown = "1h"')
    applied = alerts.apply_file(engine, write(tmp_path, edited), now=NOW)

    assert applied.rules.updated == ["site drift"]
    assert applied.rules.unchanged == ["accuracy"]
    rule = stored(engine)[0]["site drift"]
    assert (rule.fire_m, rule.fire_n, rule.cooldown_seconds) == (3, 4, 3600)


def test_what_the_file_no_longer_defines_is_removed_but_not_what_the_cli_added(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    alerts.apply_file(engine, write(tmp_path, SMALL), now=NOW)
    added, created = alerts.add_rule(
        engine, Rule(name="by hand", kind="prediction_drift", model=pump, source="cli")
    )
    assert created and added.source == "cli"

    applied = alerts.apply_file(engine, write(tmp_path, ""), now=NOW)

    assert sorted(applied.rules.removed) == ["accuracy", "site drift"]
    assert applied.endpoints.removed == ["ops"] and applied.hooks.removed == ["retrain"]
    rules, endpoints, hooks = stored(engine)
    assert list(rules) == ["by hand"]
    assert endpoints == {} and hooks == {}


def test_a_dry_run_says_what_would_change_and_changes_nothing(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    applied = alerts.apply_file(engine, write(tmp_path, SMALL), now=NOW, dry_run=True)

    assert applied.dry_run
    assert sorted(applied.rules.created) == ["accuracy", "site drift"]
    assert applied.notes[0] == "endpoint ops: a signing secret would be generated"
    assert stored(engine) == ({}, {}, {})


def test_what_only_the_database_refuses_is_reported_with_the_file_problems_and_nothing_changes(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    alerts.add_rule(engine, Rule(name="taken", kind="scope_drift", model=pump, source="api"))
    text = """
    [[endpoint]]
    name = "internal"
    url = "http://10.0.0.1/hook"
    [[rule]]
    name = "fine"
    model = "pump-failure"
    kind = "scope_drift"
    [[rule]]
    name = "taken"
    model = "no-such-model"
    kind = "scope_drift"
    """

    with pytest.raises(RulesFileInvalid) as refused:
        alerts.apply_file(engine, write(tmp_path, text), now=NOW)

    where = [p for p, _ in refused.value.problems]
    assert where == ["rule[2] (taken).model", "rule[2] (taken).name", "endpoint[1] (internal).url"]
    message = refused.value.message
    assert "alerts.toml: rule[2] (taken).name: a rule of this name was added by the api" in message
    assert (
        "10.0.0.1 is a private address; allow it with MONITOR_WEBHOOK_ALLOWED_NETWORKS" in message
    )
    assert list(stored(engine)[0]) == ["taken"] and stored(engine)[1] == {}


def test_an_allowed_network_lets_a_private_endpoint_in(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    text = '[[endpoint]]\nname = "local"\nurl = "http://127.0.0.1:9/hook"\n'

    applied = alerts.apply_file(
        engine, write(tmp_path, text), now=NOW, allowed_networks=["127.0.0.1/32"]
    )

    assert applied.endpoints.created == ["local"]


def test_an_endpoint_the_delivery_job_disabled_stays_disabled_when_the_file_is_applied_again(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    path = write(tmp_path, SMALL)
    alerts.apply_file(engine, path, now=NOW)
    with begin_write(engine) as conn:
        endpoint = webhooks.endpoint_by_name(conn, "ops")
        assert endpoint is not None
        webhooks.disable_endpoint(conn, endpoint.id, reason="the receiver answered 410", now=NOW)

    applied = alerts.apply_file(engine, path, now=NOW)

    assert applied.endpoints.unchanged == ["ops"]
    assert applied.notes == [
        "endpoint ops stays disabled (the receiver answered 410); "
        'enable it with "edge-monitor webhooks enable ops"'
    ]
    assert stored(engine)[1]["ops"].enabled is False


def test_a_rule_of_the_file_cannot_be_replaced_by_hand(
    engine: Engine, pump: str, tmp_path: Path
) -> None:
    alerts.apply_file(engine, write(tmp_path, SMALL), now=NOW)

    with pytest.raises(Conflict) as refused:
        alerts.add_rule(engine, Rule(name="accuracy", kind="scope_drift", model=pump, source="cli"))

    assert refused.value.code == "defined_in_file"


def test_a_rule_added_by_hand_must_name_what_exists(engine: Engine, pump: str) -> None:
    rule = Rule(
        name="r",
        kind="scope_drift",
        model="nope",
        endpoints=("ghost",),
        hooks=("phantom",),
        source="api",
    )

    with pytest.raises(ValidationFailed) as refused:
        alerts.add_rule(engine, rule)

    assert [d["field"] for d in refused.value.details] == ["model", "endpoints[0]", "hooks[0]"]
    assert stored(engine)[0] == {}


def test_build_rule_names_each_field_as_the_api_body_does() -> None:
    with pytest.raises(ValidationFailed) as refused:
        alerts.build_rule(
            {"name": "r", "kind": "performance", "model": "m", "params": {"metric": "x"}},
            source="api",
        )

    fields = [d["field"] for d in refused.value.details]
    assert fields == ["params.metric", "params.below"]
    assert refused.value.message.startswith("invalid alert rule 'r': params.metric: must be one of")


def test_removing_a_rule_that_does_not_exist_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound) as refused:
        alerts.remove_rule(engine, "ghost")

    assert refused.value.code == "unknown_rule"


def test_the_rule_document_reads_back_as_the_same_rule(engine: Engine, pump: str) -> None:
    alerts.apply_file(engine, EXAMPLE, now=NOW)

    for rule in alerts.list_rules(engine, model=pump):
        document = alerts.rule_document(rule)
        fields = {k: v for k, v in document.items() if k != "source" and v is not None}

        assert alerts.build_rule(fields, source="file") == replace(rule, id=None)
