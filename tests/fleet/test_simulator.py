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
from monitor.storage import models, nodes, tables
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


def test_records_of_every_version_a_node_ran_are_counted_and_stop_ends_the_run_early(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    from monitor.commands import models as model_commands

    settings = Settings(database_url=db_url, data_dir=tmp_path)
    plans = plan_fleet(2, sites=1, prefix="swap")
    config = SimulationConfig(
        rate=40, duration=120, speed=3_600, label_coverage=0.0, seed=2, poll_interval=0.3
    )
    files = paths()
    tokens = register_local(settings, plans, files)
    card = json.loads(files.card.read_text())
    model_commands.register_version(
        engine, "pump-failure", artifact=files.model.read_bytes(),
        card={**card, "version": "2"}, reference=files.reference.read_bytes(), version="2",
    )  # fmt: skip
    simulator: FleetSimulator | None = None
    promoted: list[float] = []

    def progress(done: float, predictions: int) -> None:
        assert simulator is not None
        if not promoted and predictions > 100:
            model_commands.promote(engine, "pump-failure", "2")
            promoted.append(done)
        elif (
            promoted
            and predictions > 300
            and all(n.runtime.model_version == "2" for n in simulator.nodes)
        ):
            simulator.stop()

    with BackgroundCollector(settings) as collector:
        simulator = FleetSimulator(
            collector.url,
            tokens,
            plans,
            scenario("steady", 1.0, ["site-a"]),
            files.model.read_bytes(),
            card,
            config,
        )
        result = simulator.run(progress)

    assert result.versions == {p.name: "2" for p in plans}
    assert result.seconds < config.duration  # stopped, not timed out
    with engine.connect() as conn:
        model_id = models.get_model(conn, "pump-failure").id
        stored = {
            version: conn.execute(
                select(func.coalesce(func.sum(tables.batches.c.n_records), 0)).where(
                    tables.batches.c.model_version_id == models.version_id(conn, model_id, version)
                )
            ).scalar_one()
            for version in ("1", "2")
        }
    assert stored["1"] > 0 and stored["2"] > 0
    assert result.delivered == result.predictions == stored["1"] + stored["2"]
