"""The SDK against the real collector (SQLite and PostgreSQL): a revoked token loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.sdk import Monitor
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.tables import nodes as nodes_table
from monitor.storage.tables import records

from .conftest import FAST
from .fakes import wait_until


@pytest.fixture
def real_collector(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[BackgroundCollector]:
    """The collector on a loopback port over the test's migrated database."""
    settings = Settings(database_url=db_url, data_dir=tmp_path / "collector", admin_token=None)
    with BackgroundCollector(settings) as running:
        yield running


def stored_request_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(records.c.request_id)).scalars())


def test_records_sent_while_the_token_is_revoked_arrive_once_it_is_restored(
    engine: Engine, real_collector: BackgroundCollector, tmp_path: Path
) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        node, token = nodes.add_node(conn, "node-1")
        nodes.grant_model(conn, node.id, model_id)
        nodes.revoke_node(conn, "node-1")  # e.g. revoked by mistake during a token rotation
    mon = Monitor(
        real_collector.url,
        token,
        "pump",
        "3",
        **{**FAST, "spool_dir": tmp_path / "spool", "auth_max_backoff": 0.2},
    )
    try:
        ids = [mon.log({"temperature": 70.0 + i}, "ok") for i in range(20)]
        assert wait_until(lambda: mon.stats()["auth_failures"] >= 2, timeout=30)
        assert stored_request_ids(engine) == []
        with begin_write(engine) as conn:  # the operator restores the node's token
            conn.execute(
                update(nodes_table).where(nodes_table.c.name == "node-1").values(revoked_at=None)
            )
        assert mon.flush(30)
        assert stored_request_ids(engine) == sorted(ids)
        stats = mon.stats()
        assert stats["delivered"] == 20
        assert {k: v for k, v in stats["dropped"].items() if v} == {}
    finally:
        mon.close(timeout=2.0)
