"""Fleet data for retraining tests: the demo model in production, nodes whose readings follow a
chosen concept, each node served by the version the registry assigns it, labels stored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.card import ModelCard
from monitor.demo_model import MODEL_NAME
from monitor.fleet.machines import MachineFleetGenerator
from monitor.fleet.scenarios import CLIMATE, NodePlan
from monitor.retrain.trainer import Plan
from monitor.runtime import EdgeRuntime
from monitor.storage import models, nodes, registry, retrains
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.types import utcnow
from tests.jobs.fleetdata import WINDOW, register_demo_model, register_fleet

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
#: Simulated hours per record-time second: one 15-minute window is one simulated day.
SIM_HOURS_PER_SECOND = 24 / WINDOW.total_seconds()

__all__ = ["T0", "WINDOW", "register_demo_model", "register_fleet"]


class Served:
    """Each node's runtime, by the version the registry assigns it (cached by version)."""

    def __init__(self, engine: Engine, model_id: int) -> None:
        self.engine = engine
        self.model_id = model_id
        self.runtimes: dict[int, EdgeRuntime] = {}

    def runtime(self, node_name: str) -> tuple[EdgeRuntime, int]:
        with self.engine.connect() as conn:
            node = nodes.get_node(conn, node_name)
            assigned = registry.assignment_for(conn, self.model_id, MODEL_NAME, node)
            assert assigned is not None
            version = assigned.version
            if version.id not in self.runtimes:
                blob = registry.artifact(conn, version.id)
                assert version.card is not None
                self.runtimes[version.id] = EdgeRuntime(blob, ModelCard.from_dict(version.card))
        return self.runtimes[version.id], version.id

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.close()


def store_window(
    engine: Engine,
    model_id: int,
    plans: Sequence[NodePlan],
    index: int,
    per_node: int,
    *,
    concept: float,
    served: Served,
    labelled: float = 1.0,
    seed: int = 3,
    concept_of: dict[str, float] | None = None,
) -> int:
    """Window number ``index`` (from T0): ``per_node`` readings per node at ``concept`` (or the
    node's own in ``concept_of``), predicted by each node's assigned version, with the true
    label of the first ``labelled`` share stored. Returns the records stored."""
    start = T0 + index * WINDOW
    hour = index * 24.0
    stored = 0
    label_rows = []
    for plan in plans:
        runtime, version_id = served.runtime(plan.name)
        generator = MachineFleetGenerator(seed).child(f"{plan.name}@{index}")
        readings = generator.readings(
            per_node,
            start_hour=hour,
            hours=24.0,
            site=CLIMATE,
            concept=(concept_of or {}).get(plan.name, concept),
        )
        rows = readings.rows()
        predictions = runtime.predict_batch(rows)
        truth = readings.labels()
        records = []
        for i, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
            uid = uuid.uuid4().hex
            seconds = (readings.t_hours[i] - hour) / SIM_HOURS_PER_SECOND
            records.append(
                {
                    "id": uid,
                    "request_id": uid,
                    "ts": (start + timedelta(seconds=float(seconds))).timestamp(),
                    "features": row,
                    "prediction": prediction.label,
                    "probabilities": prediction.probabilities,
                    "latency_ms": prediction.latency_ms,
                }
            )
            if i < int(per_node * labelled):
                label_rows.append({"request_id": uid, "label": truth[i]})
        with begin_write(engine) as conn:
            node = nodes.get_node(conn, plan.name)
            insert_batch(
                conn,
                node_id=node.id,
                model_id=model_id,
                model_version_id=version_id,
                batch_uid=None,
                batch=prepare_batch(records),
            )
        stored += len(records)
    with begin_write(engine) as conn:
        upsert_labels(conn, model_id=model_id, node_id=None, rows=label_rows)
    return stored


def new_run(engine: Engine, model_id: int, *, status: str = "running") -> int:
    """A run of a reference hook for the model, in ``status``."""
    now = utcnow()
    with begin_write(engine) as conn:
        hook = retrains.upsert_hook(
            conn,
            name=f"retrain-{uuid.uuid4().hex[:8]}",
            model_id=model_id,
            kind="reference",
            config={},
            timeout_seconds=600.0,
            cooldown_seconds=0,
            now=now,
        )
        run = retrains.queue_run(conn, hook, trigger="manual", now=now)
        retrains.set_run(conn, run.id, status=status, now=now)
    return run.id


def version_names(engine: Engine, model_id: int) -> dict[str, str]:
    """Every version's stage, by name."""
    with engine.connect() as conn:
        return {v.version: v.stage for v in registry.versions(conn, model_id)}


def model_id_of(engine: Engine) -> int:
    with engine.connect() as conn:
        return models.get_model(conn, MODEL_NAME).id


def produced_run(engine: Engine, model_id: int, version: str) -> int:
    """A run that produced ``version`` (as the hook runner leaves it)."""
    run_id = new_run(engine, model_id)
    with begin_write(engine) as conn:
        retrains.set_run(conn, run_id, status="produced", now=utcnow(), version=version)
    return run_id


def register_worse_candidate(engine: Engine, version: str = "2") -> str:
    """Production's network with a threshold that calls every machine failing: ~10% accurate."""
    import json

    from monitor.commands import models as model_commands
    from monitor.demo_model import paths

    card = json.loads(paths().card.read_text())
    card.update(version=version, threshold=0.0)
    model_commands.register_version(
        engine, MODEL_NAME, artifact=paths().model.read_bytes(), card=card
    )
    return version


def drifted_fleet(
    engine: Engine, *, windows: int = 4, per_node: int = 250, nodes: int = 8
) -> tuple[int, list[NodePlan], Served]:
    """The demo model in production; one steady window, then failures in the new mode
    everywhere (concept drift); each node served by its assigned version."""
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, nodes)
    served = Served(engine, model_id)
    for index in range(windows):
        concept = 0.0 if index == 0 else 1.0
        store_window(engine, model_id, plans, index, per_node, concept=concept, served=served)
    return model_id, plans, served


def quiet(_line: str) -> None:
    """A ``say`` that keeps the retrainer's progress to itself."""


def quick_plan() -> Plan:
    """The retrainer's plan, made quick for tests: fewer optimiser steps, two spans tried."""
    return Plan(max_iter=60, spans=(1.0, 0.25))
