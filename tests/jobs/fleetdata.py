"""Simulated fleet data stored straight into a database, for testing the scheduled jobs.

The demo model is registered with its reference data; readings come from the fleet generator
under a scenario, predictions from the real ONNX model through the runtime, and records are
stored through the same storage functions as the collector uses. Time maps as the simulator
maps it: one 15-minute window covers one simulated day, so every window sees a whole
day/night cycle, like the reference.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Engine

from monitor.demo_model import MODEL_NAME, paths
from monitor.fleet.machines import MachineFleetGenerator
from monitor.fleet.scenarios import NodePlan, Scenario, plan_fleet
from monitor.runtime import EdgeRuntime
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels
from monitor.storage.records import insert_batch, prepare_batch

WINDOW = timedelta(minutes=15)
#: Simulated hours per real (record-time) second: a 15-minute window is one simulated day.
SIM_HOURS_PER_SECOND = 24 / WINDOW.total_seconds()


@cache
def runtime() -> EdgeRuntime:
    files = paths()
    return EdgeRuntime(files.model, files.card)


def register_demo_model(engine: Engine) -> int:
    """Register the demo model, version 1 in production with its reference; returns its id."""
    files = paths()
    import json

    import pyarrow.parquet as pq

    with begin_write(engine) as conn:
        model_id = models.add_model(conn, MODEL_NAME).id
        registry.register_version(
            conn,
            model_id,
            "1",
            artifact=files.model.read_bytes(),
            card=json.loads(files.card.read_text()),
            reference=files.reference.read_bytes(),
            reference_rows=pq.ParquetFile(files.reference).metadata.num_rows,
        )
        registry.promote(conn, model_id, "1")
    return model_id


def register_fleet(engine: Engine, count: int, sites: int = 4) -> list[NodePlan]:
    plans = plan_fleet(count, sites=sites)
    with begin_write(engine) as conn:
        for plan in plans:
            nodes.add_node(conn, plan.name, group_name=plan.group, site=plan.site)
    return plans


@dataclass
class Stored:
    """What was stored: request ids with their true labels, per node."""

    labels: dict[str, list[tuple[str, str]]]


def store_readings(
    engine: Engine,
    model_id: int,
    plans: list[NodePlan],
    plan: Scenario,
    start: datetime,
    end: datetime,
    per_node: int,
    *,
    t0: datetime,
    seed: int = 3,
) -> Stored:
    """``per_node`` readings per node with record times spread over ``[start, end)``; the
    scenario's clock starts at ``t0``."""
    model = runtime()
    stored = Stored({})
    seconds = (end - start).total_seconds()
    with begin_write(engine) as conn:
        version_id = models.version_id(conn, model_id, "1")
        for node_plan in plans:
            node = nodes.get_node(conn, node_plan.name)
            generator = MachineFleetGenerator(seed).child(f"{node_plan.name}@{start.isoformat()}")
            hour = (start - t0).total_seconds() * SIM_HOURS_PER_SECOND
            readings = generator.readings(
                per_node,
                start_hour=hour,
                hours=seconds * SIM_HOURS_PER_SECOND,
                **plan.knobs(node_plan, hour),
            )
            rows = readings.rows()
            predictions = model.predict_batch(rows)
            truth = readings.labels()
            records = []
            for i, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
                uid = uuid.uuid4().hex
                sim_seconds = (readings.t_hours[i] - hour) / SIM_HOURS_PER_SECOND
                records.append(
                    {
                        "id": uid,
                        "request_id": uid,
                        "ts": (start + timedelta(seconds=float(sim_seconds))).timestamp(),
                        "features": row,
                        "prediction": prediction.label,
                        "probabilities": prediction.probabilities,
                        "latency_ms": prediction.latency_ms,
                    }
                )
                stored.labels.setdefault(node_plan.name, []).append((uid, truth[i]))
            insert_batch(
                conn,
                node_id=node.id,
                model_id=model_id,
                model_version_id=version_id,
                batch_uid=None,
                batch=prepare_batch(records),
            )
    return stored


def send_labels(engine: Engine, model_id: int, stored: Stored, share: float = 1.0) -> int:
    """Store the true label of the first ``share`` of each node's records."""
    rows = []
    for pairs in stored.labels.values():
        for request_id, label in pairs[: int(len(pairs) * share)]:
            rows.append({"request_id": request_id, "label": label})
    with begin_write(engine) as conn:
        upsert_labels(conn, model_id=model_id, node_id=None, rows=rows)
    return len(rows)
