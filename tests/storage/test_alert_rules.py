"""Alert rules are stored by name and read back as the same Rule (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.alerts.rules import Rule
from monitor.errors import NotFound, ValidationFailed
from monitor.storage import alert_rules
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_rule_reads_back_as_it_was_stored(engine) -> None:
    rule = Rule(
        name="site drift",
        kind="feature_drift",
        model="pump",
        params={"feature": "vibration"},
        scope="site",
        group_by="site",
        fire_m=2,
        fire_n=3,
        resolve_m=3,
        resolve_n=3,
        cooldown_seconds=1800,
        severity="critical",
        endpoints=("ops",),
        hooks=("retrain",),
        source="file",
    )
    with begin_write(engine) as conn:
        add_model(conn, "pump")
        stored = alert_rules.upsert_rule(conn, rule, now=NOW)
    assert stored.id is not None
    assert stored == rule.__class__(**{**_fields(rule), "id": stored.id})
    with engine.connect() as conn:
        assert alert_rules.rule_by_name(conn, "site drift") == stored
        assert alert_rules.list_rules(conn, source="file") == [stored]
        assert alert_rules.list_rules(conn, source="api") == []


def test_upserting_by_name_replaces_and_keeps_the_id(engine) -> None:
    with begin_write(engine) as conn:
        model = add_model(conn, "pump")
        first = alert_rules.upsert_rule(
            conn, Rule(name="r", kind="scope_drift", model="pump"), now=NOW
        )
        second = alert_rules.upsert_rule(
            conn, Rule(name="r", kind="scope_drift", model="pump", severity="info"), now=NOW
        )
        node_rule = alert_rules.upsert_rule(
            conn,
            Rule(
                name="offline", kind="node_offline", scope="each_node", params={"for_seconds": 60}
            ),
            now=NOW,
        )
        assert second.id == first.id and second.severity == "info"
        assert node_rule.model is None and node_rule.endpoints is None and node_rule.hooks == ()
        assert [r.name for r in alert_rules.list_rules(conn)] == ["offline", "r"]
        assert [r.name for r in alert_rules.list_rules(conn, model_id=model.id)] == ["r"]
        assert alert_rules.delete_rule(conn, "r") is True
        assert alert_rules.delete_rule(conn, "r") is False
        assert alert_rules.rule_by_name(conn, "r") is None


def test_a_rule_for_an_unknown_model_or_with_bad_fields_is_refused(engine) -> None:
    with begin_write(engine) as conn:
        with pytest.raises(NotFound):
            alert_rules.upsert_rule(conn, Rule(name="r", kind="scope_drift", model="nope"), now=NOW)
        add_model(conn, "pump")
        with pytest.raises(ValidationFailed) as caught:
            alert_rules.upsert_rule(
                conn, Rule(name="r", kind="feature_drift", model="pump"), now=NOW
            )
        assert caught.value.details[0]["field"] == "rule.params.feature"


def _fields(rule: Rule) -> dict:
    return {name: getattr(rule, name) for name in rule.__dataclass_fields__}
