"""Alert transitions from observation histories: M-of-N, grouping, cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from monitor.alerts.rules import Rule
from monitor.alerts.state import (
    FIRED,
    RESOLVED,
    UPDATED,
    History,
    OpenAlert,
    group_of,
    transitions,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
B, C, U = "breach", "clear", "unknown"


def rule(**fields) -> Rule:
    return Rule(name="r", kind="scope_drift", model="m", **fields)


def history(rows: dict[str, list[str]]) -> History:
    subjects = sorted(rows)
    return History(subjects, np.array([rows[s] for s in subjects], dtype=object))


def groups(subjects, by="site") -> dict[str, str]:
    sites = {"n1": "a", "n2": "a", "n3": "b"}
    return {s: group_of(by, s, sites, {}) for s in subjects}


def test_m_of_n_breaches_fire_and_fewer_do_not() -> None:
    r = rule(fire_m=2, fire_n=3)
    assert transitions(r, history({"site:a": [C, B, C]}), {}, [], {}, NOW) == []
    [fired] = transitions(r, history({"site:a": [B, C, B]}), {}, [], {}, NOW)
    assert (fired.kind, fired.group_key, fired.subjects) == (FIRED, "site:a", ("site:a",))


def test_unknown_windows_count_neither_way() -> None:
    r = rule(fire_m=2, fire_n=3, resolve_m=2, resolve_n=2)
    assert transitions(r, history({"site:a": [B, U, U]}), {}, [], {}, NOW) == []
    still = [OpenAlert("site:a", frozenset({"site:a"}))]
    assert transitions(r, history({"site:a": [B, U, C]}), {}, still, {}, NOW) == []
    [resolved] = transitions(r, history({"site:a": [U, C, C]}), {}, still, {}, NOW)
    assert resolved.kind == RESOLVED and resolved.left == ("site:a",)


def test_nodes_of_one_site_fold_into_one_alert_updated_as_they_join_and_leave() -> None:
    r = rule(scope="each_node", group_by="site")
    h = history({"node:n1": [B], "node:n2": [B], "node:n3": [B]})
    fired = transitions(r, h, groups(h.subjects), [], {}, NOW)
    assert sorted((t.group_key, t.subjects) for t in fired) == [
        ("site:a", ("node:n1", "node:n2")),
        ("site:b", ("node:n3",)),
    ]
    open_a = [OpenAlert("site:a", frozenset({"node:n1"}))]
    h = history({"node:n1": [C], "node:n2": [B]})
    [update] = transitions(r, h, groups(h.subjects), open_a, {}, NOW)
    assert update.kind == UPDATED
    assert (update.subjects, update.joined, update.left) == (
        ("node:n2",),
        ("node:n2",),
        ("node:n1",),
    )


def test_a_group_resolved_within_its_cooldown_does_not_fire_again() -> None:
    r = rule(cooldown_seconds=600)
    h = history({"fleet": [B]})
    assert transitions(r, h, {}, [], {"fleet": NOW - timedelta(minutes=5)}, NOW) == []
    [again] = transitions(r, h, {}, [], {"fleet": NOW - timedelta(minutes=11)}, NOW)
    assert again.kind == FIRED


def test_the_same_history_twice_asks_for_nothing_new() -> None:
    r = rule(fire_m=1, fire_n=2)
    h = history({"fleet": [B, B]})
    [fired] = transitions(r, h, {}, [], {}, NOW)
    assert transitions(r, h, {}, [OpenAlert("fleet", frozenset(fired.subjects))], {}, NOW) == []


def test_group_keys() -> None:
    sites, grps = {"n1": "hot"}, {"n1": "line-1"}
    assert group_of(None, "node:n1", sites, grps) == "node:n1"
    assert group_of("site", "node:n1", sites, grps) == "site:hot"
    assert group_of("group", "node:n1", sites, grps) == "group:line-1"
    assert group_of("site", "node:n9", sites, grps) == "site:(none)"
    assert group_of("site", "site:hot", sites, grps) == "site:hot"
    assert group_of("rule", "fleet", sites, grps) == "rule"
