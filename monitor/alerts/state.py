"""Alert state: from subjects' recent observations to alert transitions (fired, updated,
resolved), with M-of-N windows, grouping and cooldown. Pure: the job reads and writes.

A subject joins its group's alert when at least ``fire_m`` of the rule's last ``fire_n`` judged
windows breached for it, and leaves when at least ``resolve_m`` of the last ``resolve_n`` were
clear; an ``unknown`` window counts for neither (a judged window with no observation is clear).
Subjects fold into alerts by ``group_by``: one alert per subject (None), per site, per group, or
one for the rule. An alert fires with its first subject, is updated as subjects join or leave,
and resolves when its last subject leaves; a (rule, group) that resolved less than
``cooldown_seconds`` ago does not fire again until that time has passed. The decision depends
only on the stored history, so evaluating the same window twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from monitor.alerts.rules import FLEET, GROUP, NODE, SITE, Rule
from monitor.alerts.uncertainty import BREACH, CLEAR

FIRED = "fired"
UPDATED = "updated"
RESOLVED = "resolved"

#: The group of a subject whose node has no site (or group).
UNASSIGNED = "(none)"


def group_of(
    group_by: str | None,
    subject: str,
    node_sites: Mapping[str, str | None],
    node_groups: Mapping[str, str | None],
) -> str:
    """The alert a subject's trouble belongs to (its group key)."""
    if group_by is None:
        return subject
    if group_by == "rule":
        return "rule"
    kind, _, key = subject.partition(":")
    if kind == group_by:
        return subject
    if kind == NODE:
        lookup = node_sites if group_by == SITE else node_groups
        return f"{group_by}:{lookup.get(key) or UNASSIGNED}"
    if kind == FLEET:
        return FLEET
    # A site grouped by group (or a group by site) cannot be placed: it is its own alert.
    assert group_by in (SITE, GROUP)
    return subject


@dataclass(frozen=True)
class History:
    """Per subject, its states in the rule's last judged windows, oldest first (every row the
    same length; a window without an observation of the subject: clear)."""

    subjects: Sequence[str]
    states: np.ndarray  # (len(subjects), windows) of breach / clear / unknown

    @staticmethod
    def build(windows: Sequence[datetime], observed: Mapping[tuple[str, datetime], str]) -> History:
        """From ``(subject, window_start) -> state`` over these windows (oldest first)."""
        subjects = sorted({s for s, _ in observed})
        column = {w: i for i, w in enumerate(windows)}
        states = np.full((len(subjects), len(windows)), CLEAR, dtype=object)
        row = {s: i for i, s in enumerate(subjects)}
        for (s, w), state in observed.items():
            if w in column:
                states[row[s], column[w]] = state
        return History(subjects, states)


@dataclass(frozen=True)
class OpenAlert:
    """A firing alert of the rule: its group and the subjects in it now."""

    group_key: str
    subjects: frozenset[str]


@dataclass(frozen=True)
class Transition:
    """One alert's change: fired (a new alert), updated (subjects joined or left), resolved."""

    kind: str
    group_key: str
    subjects: tuple[str, ...]
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()


def firing(rule: Rule, history: History) -> np.ndarray:
    """Per subject: at least fire_m of the last fire_n windows breached."""
    recent = history.states[:, -rule.fire_n :] if history.states.size else history.states
    return np.asarray((recent == BREACH).sum(axis=1) >= rule.fire_m, dtype=bool).reshape(
        len(history.subjects)
    )


def recovered(rule: Rule, history: History) -> np.ndarray:
    """Per subject: at least resolve_m of the last resolve_n windows were clear."""
    recent = history.states[:, -rule.resolve_n :] if history.states.size else history.states
    return np.asarray((recent == CLEAR).sum(axis=1) >= rule.resolve_m, dtype=bool).reshape(
        len(history.subjects)
    )


def transitions(
    rule: Rule,
    history: History,
    groups: Mapping[str, str],
    open_alerts: Sequence[OpenAlert],
    last_resolved: Mapping[str, datetime],
    now: datetime,
) -> list[Transition]:
    """The alert transitions this history calls for. ``groups``: each subject's group key;
    ``open_alerts``: the rule's firing alerts; ``last_resolved``: when each group's latest
    alert resolved (for the cooldown)."""
    subjects = list(history.subjects)
    fire = dict(zip(subjects, firing(rule, history).tolist(), strict=True))
    recover = dict(zip(subjects, recovered(rule, history).tolist(), strict=True))
    out: list[Transition] = []
    by_group = {a.group_key: a for a in open_alerts}
    candidates: dict[str, set[str]] = {}
    for s in subjects:
        if fire[s]:
            candidates.setdefault(groups.get(s, s), set()).add(s)
    for key, alert in sorted(by_group.items()):
        # A subject with no history left (outside every window looked at) is clear.
        left = {s for s in alert.subjects if recover.get(s, True)}
        joined = candidates.get(key, set()) - alert.subjects
        now_in = (alert.subjects - left) | joined
        if not now_in:
            out.append(Transition(RESOLVED, key, (), left=tuple(sorted(left))))
        elif joined or left:
            out.append(
                Transition(
                    UPDATED, key, tuple(sorted(now_in)), tuple(sorted(joined)), tuple(sorted(left))
                )
            )
    cooldown = timedelta(seconds=rule.cooldown_seconds)
    for key, members in sorted(candidates.items()):
        if key in by_group:
            continue
        resolved_at = last_resolved.get(key)
        if resolved_at is not None and now - resolved_at < cooldown:
            continue
        out.append(Transition(FIRED, key, tuple(sorted(members)), joined=tuple(sorted(members))))
    return out
