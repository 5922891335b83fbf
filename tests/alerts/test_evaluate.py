"""Window rules judged on a window's result tables: per (rule, subject) breach, clear or unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from monitor.alerts.evaluate import NodeFigures, WindowFigures, evaluate, evaluate_nodes
from monitor.alerts.rules import Rule

START = datetime(2026, 1, 1, 10, tzinfo=UTC)


def figures(**overrides) -> WindowFigures:
    drift = pd.DataFrame(
        {
            "scope_kind": ["fleet", "site", "site", "node", "node", "node"],
            "scope_key": ["", "hot", "cold", "n1", "n2", "n3"],
            "drifted": [True, True, False, True, None, False],
            "prediction_drifted": [False, False, False, True, None, False],
            "share_drifted": [0.5, 0.5, 0.0, 0.5, np.nan, 0.0],
            "n_drifted": [1, 1, 0, 1, 0, 0],
        }
    )
    features = pd.DataFrame(
        [
            (kind, key, feature, "feature", drifted, 0.01 if drifted else 0.5, 0.1, 0.05)
            for kind, key, drifted_set in [
                ("fleet", "", {"vibration"}),
                ("site", "hot", {"vibration"}),
                ("site", "cold", set()),
                ("node", "n1", {"vibration"}),
                ("node", "n3", set()),
            ]
            for feature, drifted in (("vibration", "vibration" in drifted_set), ("rpm", False))
        ],
        columns=[
            "scope_kind",
            "scope_key",
            "feature",
            "role",
            "drifted",
            "adjusted_p_value",
            "statistic",
            "threshold",
        ],
    )
    quality = pd.DataFrame(
        {
            "scope_kind": ["fleet", "fleet", "node", "node"],
            "scope_key": ["", "", "n1", "n1"],
            "feature": ["vibration", "rpm", "vibration", "rpm"],
            "role": ["feature"] * 4,
            "missing_share": [0.01, 0.0, 0.4, np.nan],
            "new_category_share": [np.nan] * 4,
            "out_of_range_share": [0.0, 0.0, 0.0, 0.0],
        }
    )
    performance = pd.DataFrame(
        {
            "scope_kind": ["fleet", "node"],
            "scope_key": ["", "n1"],
            "status": ["ok", "insufficient_labels"],
            "n_labelled": [2000, 5],
            "accuracy": [0.7, np.nan],
            "mae": [np.nan, np.nan],
        }
    )
    base = {
        "window_start": START,
        "window_end": START + timedelta(minutes=15),
        "drift": drift,
        "drift_features": features,
        "quality_features": quality,
        "performance": performance,
    }
    return WindowFigures(**{**base, **overrides})


def states(rule: Rule, found: WindowFigures | None = None) -> dict[str, str]:
    out = evaluate(found or figures(), [rule])
    return dict(zip(out["subject"], out["state"], strict=True))


def test_scope_drift_judges_each_site_and_an_insufficient_verdict_is_unknown() -> None:
    assert states(Rule("r", "scope_drift", "m", scope="site")) == {
        "site:hot": "breach",
        "site:cold": "clear",
    }
    assert states(Rule("r", "scope_drift", "m", scope="each_node")) == {
        "node:n1": "breach",
        "node:n2": "unknown",
        "node:n3": "clear",
    }
    out = evaluate(figures(), [Rule("r", "scope_drift", "m", scope="site", scope_key="hot")])
    assert out["details"].tolist() == [{"drifted_features": ["vibration"]}]


def test_a_named_feature_and_prediction_drift() -> None:
    rule = Rule("r", "feature_drift", "m", params={"feature": "vibration"}, scope="each_node")
    assert states(rule) == {"node:n1": "breach", "node:n3": "clear"}
    assert states(Rule("r", "prediction_drift", "m", scope="node", scope_key="n1")) == {
        "node:n1": "breach"
    }


def test_share_drifted_against_its_threshold() -> None:
    rule = Rule("r", "share_drifted", "m", params={"min_share": 0.5}, scope="each_node")
    assert states(rule) == {"node:n1": "breach", "node:n2": "unknown", "node:n3": "clear"}


def test_performance_is_judged_with_its_interval_and_too_few_labels_are_unknown() -> None:
    rule = Rule("r", "performance", "m", params={"metric": "accuracy", "below": 0.8})
    assert states(rule) == {"fleet": "breach"}
    assert states(
        Rule(
            "r", "performance", "m", params={"metric": "accuracy", "below": 0.8}, scope="each_node"
        )
    ) == {"node:n1": "unknown"}


def test_performance_drop_needs_a_reference_figure() -> None:
    rule = Rule("r", "performance_drop", "m", params={"metric": "accuracy", "drop": 0.05})
    assert states(rule) == {"fleet": "unknown"}
    out = evaluate(figures(reference={"accuracy": 0.93}), [rule])
    assert out["state"].tolist() == ["breach"]
    assert out["bound"].tolist() == [0.93 - 0.05]


def test_quality_of_one_feature_or_the_worst_of_any() -> None:
    any_feature = Rule(
        "r", "quality", "m", params={"figure": "missing_share", "above": 0.2}, scope="each_node"
    )
    assert states(any_feature) == {"node:n1": "breach"}
    out = evaluate(figures(), [any_feature])
    assert out["details"].tolist() == [{"figure": "missing_share", "feature": "vibration"}]
    rpm = Rule(
        "r",
        "quality",
        "m",
        params={"figure": "missing_share", "above": 0.2, "feature": "rpm"},
        scope="each_node",
    )
    assert states(rpm) == {"node:n1": "unknown"}
    fleet = Rule("r", "quality", "m", params={"figure": "missing_share", "above": 0.2})
    assert states(fleet) == {"fleet": "clear"}


def test_many_rules_at_once_are_numbered_by_their_place() -> None:
    rules = [
        Rule("a", "scope_drift", "m"),
        Rule("b", "node_offline", None, params={"for_seconds": 60}, scope="each_node"),
        Rule("c", "scope_drift", "m", scope="site"),
    ]
    out = evaluate(figures(), rules)
    assert sorted(set(out["rule"])) == [0, 2]


def test_node_rules_on_the_fleet_s_health() -> None:
    nodes = pd.DataFrame(
        {
            "name": ["n1", "n2", "n3"],
            "site": ["hot", "hot", "cold"],
            "group": [None, None, None],
            "heartbeat_age_seconds": [10.0, 900.0, np.nan],
            "clock_skew_age_seconds": [60.0, np.nan, 7200.0],
            "clock_skew_seconds": [-3600.0, np.nan, 10.0],
            "lost": [0.0, 50.0, np.nan],
            "latency_p95_ms": [20.0, 500.0, np.nan],
            "stale": [False, True, True],
        }
    )
    found = NodeFigures(nodes)

    def judged(rule: Rule) -> dict[str, str]:
        out = evaluate_nodes(found, [rule])
        return dict(zip(out["subject"], out["state"], strict=True))

    offline = Rule("o", "node_offline", params={"for_seconds": 300}, scope="each_node")
    assert judged(offline) == {"node:n1": "clear", "node:n2": "breach", "node:n3": "unknown"}
    skew = Rule("s", "clock_skew", scope="site", scope_key="hot")
    assert judged(skew) == {"node:n1": "breach", "node:n2": "clear"}
    latency = Rule("l", "latency_p95", params={"above_ms": 100}, scope="each_node")
    assert judged(latency) == {"node:n1": "clear", "node:n2": "unknown", "node:n3": "unknown"}
    drops = Rule("d", "sdk_drops", params={"above": 10}, scope="node", scope_key="n1")
    assert judged(drops) == {"node:n1": "clear"}
