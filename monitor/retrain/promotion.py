"""After a retrain produced a version: the gate, then the canary (status canary) or the stop
(status gated, the candidate archived), the figures in the run's details either way."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, Engine

from monitor.config import Settings
from monitor.errors import Conflict, MonitorError
from monitor.retrain import gate
from monitor.storage import registry
from monitor.storage.engine import begin_write
from monitor.storage.nodes import NODE, list_nodes
from monitor.storage.types import utcnow

logger = logging.getLogger(__name__)


def consider(
    engine: Engine, run_id: int, settings: Settings, *, now: datetime | None = None
) -> str:
    """Gate the version run ``run_id`` produced; start its canary or stop it. The new status."""
    from monitor.storage import retrains

    now = now or utcnow()
    with engine.connect() as conn:
        run = retrains.get_run(conn, run_id)
    if run.status != "produced" or run.version is None:
        raise Conflict(
            f"retrain run {run_id} is {run.status}, not a produced version", code="bad_status"
        )
    margin = settings.retrain_promotion_margin
    try:
        verdict = gate.evaluate(engine, run.model, run.version, margin=margin)
        figures = verdict.to_dict()
    except MonitorError as exc:  # a version the gate cannot run (no card, no artifact)
        verdict, figures = None, {"passed": False, "reason": exc.message, "margin": margin}
    if verdict is not None:
        gate.record(verdict)
    with begin_write(engine) as conn:
        current = retrains.lock_run(conn, run_id)
        if current.status != "produced":
            return current.status  # another worker got here first
        if verdict is None or not verdict.passed:
            if registry.get_version(conn, run.model_id, run.version).stage == "candidate":
                registry.archive(conn, run.model_id, run.version)
            retrains.set_run(conn, run_id, status="gated", now=now, details={"gate": figures})
            logger.info(
                "retrain run %d: %s %s stopped by the gate: %s",
                run_id,
                run.model,
                run.version,
                figures["reason"],
            )
            return "gated"
        share, members = canary_members(
            conn, run.model_id, run.model, settings.retrain_canary_share
        )
        registry.start_canary(conn, run.model_id, run.version, share)
        canary = {
            "started_at": now.isoformat(),
            "share": share,
            "nodes": members,
            "windows": settings.retrain_canary_windows,
        }
        retrains.set_run(
            conn, run_id, status="canary", now=now, details={"gate": figures, "canary": canary}
        )
    logger.info(
        "retrain run %d: %s %s passed the gate (%s); canary on %d nodes (share %.2f)",
        run_id,
        run.model,
        run.version,
        figures["reason"],
        len(members),
        share,
    )
    return "canary"


def canary_members(
    conn: Connection, model_id: int, model: str, share: float
) -> tuple[float, list[str]]:
    """The share to use and the nodes it sends the canary to (nodes of pinned groups run
    their pin). A share that would reach no node is raised to reach the first one by bucket:
    a canary without a node proves nothing."""
    pins = registry.deployment(conn, model_id).pins
    eligible = sorted(
        (registry.canary_bucket(model, n.name), n.name)
        for n in list_nodes(conn)
        if n.role == NODE and n.revoked_at is None and n.group_name not in pins
    )
    members = [name for bucket, name in eligible if bucket < share]
    if not members and eligible and len(eligible) > 1:
        bucket, name = eligible[0]
        share = min(1.0, max(share, bucket + 1e-9))
        members = [name]
    return share, sorted(members)
