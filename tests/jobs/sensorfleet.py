"""A small sensor fleet with day-long windows, stored straight into a database: a model that
runs elsewhere (reference data only, three normal features), nodes of chosen sizes, and a
seeded generator whose features can be moved by a number of standard deviations per node and
window."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch

WINDOW = timedelta(days=1)
T0 = datetime(2026, 9, 1, tzinfo=UTC)
#: name -> (mean, standard deviation)
FEATURES = {"temperature": (70.0, 5.0), "pressure": (2.0, 0.3), "vibration": (3.0, 0.8)}


def readings(rng: np.random.Generator, n: int, shift: Mapping[str, float]) -> pd.DataFrame:
    """``n`` rows of features (moved by ``shift`` standard deviations) and a prediction."""
    frame = pd.DataFrame(
        {
            name: rng.normal(mean + shift.get(name, 0.0) * sd, sd, n).round(3)
            for name, (mean, sd) in FEATURES.items()
        }
    )
    frame["prediction"] = np.where(frame["vibration"] > 4.0, "fail", "ok")
    return frame


@dataclass
class SensorFleet:
    """A registered model and its nodes in one database."""

    engine: Engine
    model_id: int
    version_id: int
    node_ids: dict[str, int]
    seed: int = 5

    @classmethod
    def register(
        cls, engine: Engine, node_names: list[str], *, groups: Mapping[str, str] | None = None
    ) -> SensorFleet:
        buffer = io.BytesIO()
        readings(np.random.default_rng(1), 5_000, {}).to_parquet(buffer, index=False)
        with begin_write(engine) as conn:
            model_id = models.add_model(conn, "sensors").id
            registry.register_version(
                conn,
                model_id,
                "1",
                artifact=None,
                card=None,
                reference=buffer.getvalue(),
                reference_rows=5_000,
            )
            version_id = models.version_id(conn, model_id, "1")
            node_ids = {
                name: nodes.add_node(conn, name, group_name=(groups or {}).get(name))[0].id
                for name in node_names
            }
        return cls(engine, model_id, version_id, node_ids)

    def send(
        self, node: str, window: int, n: int, shift: Mapping[str, float] | None = None
    ) -> None:
        """``n`` records of ``node`` with times spread over window number ``window``, stored
        now (their batch's ``received_at``) in one batch."""
        rng = np.random.default_rng([self.seed, window, self.node_ids[node]])
        frame = readings(rng, n, shift or {})
        start = T0 + window * WINDOW
        seconds = np.sort(rng.uniform(0, WINDOW.total_seconds(), n))
        records = []
        for i, row in enumerate(frame.to_dict("records")):
            uid = uuid.uuid4().hex
            records.append(
                {
                    "id": uid,
                    "ts": (start + timedelta(seconds=float(seconds[i]))).timestamp(),
                    "features": {name: row[name] for name in FEATURES},
                    "prediction": row["prediction"],
                }
            )
        with begin_write(self.engine) as conn:
            insert_batch(
                conn,
                node_id=self.node_ids[node],
                model_id=self.model_id,
                model_version_id=self.version_id,
                batch_uid=None,
                batch=prepare_batch(records),
            )


def window_start(window: int) -> datetime:
    return T0 + window * WINDOW
