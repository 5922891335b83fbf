"""The canary job: once a canary has run its windows, roll it out to every node or roll it back.

For each retrain run in status canary, the windows analysed since the canary started are
judged (the first is skipped: nodes poll their assignment and hot-swap during it); once
``settings.retrain_canary_windows`` of them are in, the canary's nodes (those whose
``registry.canary_bucket`` is below the share; nodes of pinned groups on neither side) are
compared with the rest from their stored per-node results (``monitor.retrain.canary``).
No regression: the version is promoted (every node hot-swaps to it), status promoted. A
regression: the canary is stopped (its nodes go back to production) and the version archived,
status rolled_back. The figures go in the run's details (``canary.judgement``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.config import Settings
from monitor.retrain.canary import Judgement, NodeWindow, judge
from monitor.schema import NODE
from monitor.storage import registry, results
from monitor.storage.engine import begin_write
from monitor.storage.nodes import list_nodes
from monitor.storage.types import utcnow

logger = logging.getLogger(__name__)

_EPSILON = timedelta(microseconds=1)


def judge_canaries(engine: Engine, settings: Settings, *, now: datetime | None = None) -> int:
    """Decide every canary that has run its windows; how many were decided."""
    from monitor.storage import retrains

    now = now or utcnow()
    with engine.connect() as conn:
        runs = retrains.list_runs(conn, status="canary", limit=1000)
    decided = 0
    for run in runs:
        with engine.connect() as conn:
            canary = registry.deployment(conn, run.model_id).canary
            if canary is None or canary.version != run.version:
                judgement = None  # ended by hand: recorded as it ended
            else:
                judgement = _judge(conn, run, settings)
                if judgement is None or judgement.decision == "wait":
                    continue
        decided += _apply(engine, run.id, judgement, now)
    return decided


def _judge(conn: Connection, run: Any, settings: Settings) -> Judgement | None:
    """The judgement of one run's canary (None: the run records no canary)."""
    canary = dict(run.details.get("canary") or {})
    if "started_at" not in canary or run.version is None:
        return None
    started = datetime.fromisoformat(canary["started_at"])
    share = float(canary["share"])
    wanted = int(canary.get("windows", settings.retrain_canary_windows))
    windows = [
        w for w in results.analysed_since(conn, run.model_id, started) if w.window_start >= started
    ][1:]  # the first: nodes are still swapping
    if not windows:
        return judge([], windows=0, wanted=wanted)
    where = {
        "scope_kind": NODE,
        "start": windows[0].window_start,
        "end": windows[-1].window_start + _EPSILON,
    }
    pins = registry.deployment(conn, run.model_id).pins
    groups = {n.name: n.group_name for n in list_nodes(conn)}

    def in_canary(node: str) -> bool | None:
        if groups.get(node) in pins:
            return None
        return registry.canary_bucket(run.model, node) < share

    verdicts = {
        (row.window_start, row.scope_key): row.result.drifted
        for row in results.drift(conn, run.model_id, **where)
    }
    accuracy = {
        (row.window_start, row.scope_key): row.result
        for row in results.performance(conn, run.model_id, **where)
    }
    observations = []
    for key in sorted(set(verdicts) | set(accuracy)):
        side = in_canary(key[1])
        if side is None:
            continue
        performance = accuracy.get(key)
        observations.append(
            NodeWindow(
                node=key[1],
                canary=side,
                n_labelled=performance.n_labelled if performance else 0,
                accuracy=performance.accuracy if performance else None,
                drifted=verdicts.get(key),
            )
        )
    return judge(observations, windows=len(windows), wanted=wanted)


def _apply(engine: Engine, run_id: int, judgement: Judgement | None, now: datetime) -> int:
    """Roll out or roll back; 1 when this worker made the change."""
    from monitor.storage import retrains

    with begin_write(engine) as conn:
        run = retrains.lock_run(conn, run_id)
        if run.status != "canary" or run.version is None:
            return 0  # decided elsewhere meanwhile
        current = registry.deployment(conn, run.model_id)
        details: dict[str, Any] = {**run.details.get("canary", {})}
        details["decided_at"] = now.isoformat()
        if judgement is not None:
            details["judgement"] = judgement.to_dict()
        ours = current.canary is not None and current.canary.version == run.version
        if not ours or judgement is None:
            # Ended by hand (promoted or stopped): record what happened.
            production = current.production
            status = (
                "promoted"
                if production is not None and production.version == run.version
                else "rolled_back"
            )
            details["ended_by_hand"] = True
        elif judgement.decision == "promote":
            registry.promote(conn, run.model_id, run.version)
            status = "promoted"
        else:
            registry.stop_canary(conn, run.model_id)
            registry.archive(conn, run.model_id, run.version)
            status = "rolled_back"
        retrains.set_run(conn, run_id, status=status, now=now, details={"canary": details})
    logger.info(
        "retrain run %d: %s %s %s after its canary: %s",
        run_id,
        run.model,
        run.version,
        "rolled out to every node" if status == "promoted" else "rolled back",
        judgement.reason if judgement is not None else "its canary was ended by hand",
    )
    return 1
