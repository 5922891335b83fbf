"""Versions are created by registration; nodes may report unregistered ones only up to a cap,
so a node cannot grow the registry without bound."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine, func, select

from monitor import wire
from monitor.config import Settings
from monitor.storage.tables import model_versions
from tests.collector.conftest import auth, batch, record

DEFAULT_MAX_REPORTED_VERSIONS = Settings.model_fields["max_reported_versions"].default


def test_nodes_report_unregistered_versions_only_up_to_the_cap(
    http: httpx.Client, engine: Engine, token: str
) -> None:
    for n in range(DEFAULT_MAX_REPORTED_VERSIONS):
        answer = http.post(
            wire.RECORDS_PATH, json=batch([record()], model_version=f"v{n}"), headers=auth(token)
        )
        assert answer.status_code == 200, answer.text

    refused = http.post(
        wire.RECORDS_PATH, json=batch([record()], model_version="one-too-many"), headers=auth(token)
    )
    known = http.post(
        wire.RECORDS_PATH, json=batch([record()], model_version="v0"), headers=auth(token)
    )

    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "unregistered_version"
    assert error["details"][0]["field"] == "model_version"
    assert "edge-monitor models register" in error["message"]
    assert known.json()["accepted"] == 1  # versions already seen keep working
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(model_versions)).scalar_one()
    assert count == DEFAULT_MAX_REPORTED_VERSIONS
