"""Collector fixtures: a real collector on a loopback port, over a fresh database per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.tables import batches, labels, records

ADMIN_TOKEN = "ema_test-admin-token"
MODEL = "pump-failure"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN)


@pytest.fixture
def collector(engine: Engine, settings: Settings) -> Iterator[BackgroundCollector]:
    """A collector listening on 127.0.0.1 (the ``engine`` fixture migrated its database)."""
    with BackgroundCollector(settings) as running:
        yield running


@pytest.fixture
def http(collector: BackgroundCollector) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=collector.url, timeout=30) as client:
        yield client


@pytest.fixture
def token(engine: Engine) -> str:
    """The token of node ``node-1``, registered for the model ``pump-failure``."""
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, MODEL).id
        node, node_token = nodes.add_node(conn, "node-1", group_name="line-a", site="plant-1")
        nodes.grant_model(conn, node.id, model_id)
    return node_token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def record(**overrides: Any) -> dict[str, Any]:
    """A valid wire record; keyword arguments replace its fields."""
    uid = uuid.uuid4().hex
    base: dict[str, Any] = {
        "id": uid,
        "request_id": uid,
        "ts": time.time(),
        "features": {"temperature": 71.5, "rpm": 1450, "machine_type": "press"},
        "prediction": "ok",
        "probabilities": {"ok": 0.9, "fail": 0.1},
        "latency_ms": 1.25,
    }
    base.update(overrides)
    return base


def batch(records_: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    body = {"batch_id": uuid.uuid4().hex, "model": MODEL, "model_version": "1"}
    body.update(overrides)
    body["records"] = records_
    return body


def stored(engine: Engine) -> dict[str, int]:
    """How many records, batches and labels the database holds."""
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (("records", records), ("batches", batches), ("labels", labels))
        }


def stored_labels(engine: Engine) -> dict[str, object]:
    """Every stored label by request id."""
    with engine.connect() as conn:
        return dict(conn.execute(select(labels.c.request_id, labels.c.label)).all())
