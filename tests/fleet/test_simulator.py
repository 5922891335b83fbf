"""The fleet simulator: real runtimes and SDKs ship a scenario's data to a real collector."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.demo_model import paths
from monitor.fleet.scenarios import plan_fleet, scenario
from monitor.fleet.simulator import FleetSimulator, SimulationConfig
from monitor.simulate import register_local
from monitor.storage import models, nodes
from monitor.storage.tables import labels
from monitor.storage.windows import load_window


def test_a_sensor_drift_run_lands_in_sql_with_its_labels(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path)
    plans = plan_fleet(4, sites=2, prefix="t")
    config = SimulationConfig(
        rate=60,
        duration=6,
        speed=36_000,
        label_delay=0.5,
        label_coverage=0.5,
        seed=1,
        heartbeat_interval=1,
        poll_interval=1,
    )
    files = paths()
    tokens = register_local(settings, plans, files)
    plan = scenario("sensor-drift", config.duration * config.speed / 3600, ["site-a"])
    started = datetime.now(UTC)

    with BackgroundCollector(settings) as collector:
        result = FleetSimulator(
            collector.url,
            tokens,
            plans,
            plan,
            files.model.read_bytes(),
            json.loads(files.card.read_text()),
            config,
        ).run()

    assert result.predictions > 4 * 60 * 6 * 0.8
    assert result.delivered == result.predictions
    assert result.versions == {p.name: "1" for p in plans}
    with engine.connect() as conn:
        model = models.get_model(conn, "pump-failure")
        frame = load_window(conn, model.id, started - timedelta(seconds=5), datetime.now(UTC))
        stored_labels = conn.execute(select(func.count()).select_from(labels)).scalar_one()
        site_of = {nodes.get_node(conn, p.name).id: p.site for p in plans}
        heartbeats = [nodes.get_node(conn, p.name).last_heartbeat_at for p in plans]
    assert len(frame) == result.predictions
    assert stored_labels == result.labels
    assert 0.35 < result.labels / result.predictions < 0.65
    assert all(beat is not None for beat in heartbeats)
    late = frame[frame["ts"] >= frame["ts"].min() + (frame["ts"].max() - frame["ts"].min()) * 0.75]
    site = late["node_id"].map(site_of)
    hot = late.loc[site == "site-a", "feature:temperature_c"].mean()
    calm = late.loc[site == "site-b", "feature:temperature_c"].mean()
    assert hot > calm + 6
    assert np.isfinite(hot)
