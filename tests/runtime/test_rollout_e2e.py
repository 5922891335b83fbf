"""The runtime against the real collector: register, promote, hot swap, records per version,
runtime telemetry in the heartbeats (SQLite, collector on a loopback port)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.runtime import EdgeRuntime, ModelCard, ModelUpdater, VersionedMonitors
from monitor.storage import migrations, models, nodes
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.tables import batches, model_versions, node_heartbeats, records

ADMIN_TOKEN = "ema_runtime-e2e-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MODEL = "pump-failure"


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def live(sqlite_engine: Engine, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(collector URL, node token), with the model registered."""
    with begin_write(sqlite_engine) as conn:
        model_id = models.add_model(conn, MODEL).id
        node, token = nodes.add_node(conn, "edge-1", group_name="line-a", site="plant-1")
        nodes.grant_model(conn, node.id, model_id)
    settings = Settings(
        database_url=str(sqlite_engine.url), data_dir=tmp_path, admin_token=ADMIN_TOKEN
    )
    with BackgroundCollector(settings) as collector:
        yield collector.url, token


def register(http: httpx.Client, version: str, onnx: Path, card: ModelCard) -> None:
    body = {
        "version": version,
        "artifact_base64": base64.b64encode(onnx.read_bytes()).decode(),
        "card": card.with_version(version).to_dict(),
    }
    http.post(f"/v1/admin/models/{MODEL}/versions", json=body, headers=ADMIN).raise_for_status()


def per_version(engine: Engine) -> dict[str, int]:
    query = (
        select(model_versions.c.version, func.count())
        .select_from(
            records.join(batches, records.c.batch_id == batches.c.id).join(
                model_versions, batches.c.model_version_id == model_versions.c.id
            )
        )
        .group_by(model_versions.c.version)
    )
    with engine.connect() as conn:
        return {version: n for version, n in conn.execute(query)}


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_a_rollout_through_the_real_collector(
    live: tuple[str, str],
    sqlite_engine: Engine,
    demo: Any,
    card: ModelCard,
    rows: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    url, token = live
    with httpx.Client(base_url=url, timeout=30) as http:
        register(http, "1", demo.model, card)
        register(http, "2", demo.model_int8, card)
        http.post(f"/v1/admin/models/{MODEL}/promote/1", headers=ADMIN).raise_for_status()

        factory = VersionedMonitors(
            url,
            token,
            MODEL,
            spool_root=tmp_path / "spool",
            flush_interval=0.05,
            spool_flush_interval=0.05,
            heartbeat_interval=None,
        )
        runtime = EdgeRuntime(demo.model, monitor=factory)
        updater = ModelUpdater(runtime, url, token, interval=60)
        assert updater.poll_once() == "current"  # the shipped bytes are version 1's
        assert updater.poll_once() == "unchanged"  # ETag honoured
        for row in rows[:100]:
            assert runtime.predict(row).model_version == "1"

        http.post(f"/v1/admin/models/{MODEL}/promote/2", headers=ADMIN).raise_for_status()
        assert updater.poll_once() == "swapped"
        for row in rows[100:250]:
            assert runtime.predict(row).model_version == "2"
        assert runtime.monitor is not None and runtime.monitor.model_version == "2"
        runtime.monitor.heartbeat()
        assert wait_for(lambda: per_version(sqlite_engine) == {"1": 100, "2": 150})

        def runtime_beats() -> list[Any]:
            with sqlite_engine.connect() as conn:
                return [r for (r,) in conn.execute(select(node_heartbeats.c.runtime)) if r]

        assert wait_for(lambda: runtime_beats())
        beat = runtime_beats()[-1]
        assert beat["model_version"] == "2" and beat["swap"]["swaps"] == 1
        runtime.close()
        updater.close()
