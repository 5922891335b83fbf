"""The worker's /metrics: fleet gauges read from the database at each scrape (nodes by health,
drifting nodes, analysed windows, analysis lag), its own analysis runs and process metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, insert

from monitor.config import Settings
from monitor.jobs import scheduler
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.health import HealthRules, check_fleet
from monitor.jobs.metrics import WorkerMetrics
from monitor.jobs.windows import Window, window_of
from monitor.schema import DriftScope, ResultTable
from monitor.storage import heartbeats, models, nodes, results, tables
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.results import KindResults
from monitor.storage.types import utcnow
from tests.collector.served import free_port
from tests.prometheus import Exposition, scrape

NOW = utcnow()
SIZE = timedelta(minutes=15)
CONFIG = AnalysisConfig(window=SIZE, grace=timedelta(minutes=2))
OFFLINE_AFTER = timedelta(minutes=2)


def drift(window: Window, drifted_nodes: set[str]) -> dict[str, KindResults]:
    rows = [DriftScope("fleet", "", "ok", 900, 3, 1, 1 / 3, True, False, 1 / 3)]
    for name in ("n-1", "n-2", "n-3"):
        verdict = name in drifted_nodes
        rows.append(
            DriftScope("node", name, "ok", 300, 3, int(verdict), verdict / 3, verdict, None, None)
        )
    return {"drift": KindResults(ResultTable.from_rows(DriftScope, rows))}


def store_records(engine: Engine, model_id: int, node_id: int, window: Window, n: int) -> None:
    rows = [
        {
            "id": f"{window.start.timestamp()}-{i}",
            "ts": (window.start + timedelta(seconds=i)).timestamp(),
            "features": {"x": i},
            "prediction": 1,
        }
        for i in range(n)
    ]
    with begin_write(engine) as conn:
        insert_batch(
            conn,
            node_id=node_id,
            model_id=model_id,
            model_version_id=models.version_id(conn, model_id, "1"),
            batch_uid=None,
            batch=prepare_batch(rows),
        )


@pytest.fixture
def fleet(engine: Engine) -> dict[str, Window]:
    """Nodes in every health, two analysed windows of `pump`, two due ones and one still open;
    `idle` has nothing."""
    with begin_write(engine) as conn:
        pump = models.add_model(conn, "pump").id
        models.add_model(conn, "idle")
        for name in ("n-1", "n-2", "n-3", "lossy", "old", "silent", "gone"):
            nodes.add_node(conn, name)
        nodes.add_node(conn, "lab", role="labeller")  # a person's token, not a device
        nodes.revoke_node(conn, "gone")
        by_name = {n.name: n.id for n in nodes.list_nodes(conn)}
        for name in ("n-1", "n-2", "n-3", "lossy", "old"):
            nodes.touch_node(conn, by_name[name], heartbeat=True)
        heartbeats.record_heartbeat(
            conn, node_id=by_name["lossy"], ts=NOW, model_version_id=None,
            sdk={"dropped": {"queue_full": 5}}, runtime=None,
        )  # fmt: skip
        check_fleet(conn, HealthRules(offline_after=OFFLINE_AFTER), now=utcnow())
        conn.execute(
            nodes.nodes.update()
            .where(nodes.nodes.c.id == by_name["old"])
            .values(last_heartbeat_at=NOW - timedelta(minutes=5))
        )
    windows = {
        "older": window_of(NOW - timedelta(hours=3), SIZE),
        "latest": window_of(NOW - timedelta(hours=3) + SIZE, SIZE),
        "due": window_of(NOW - timedelta(hours=1), SIZE),
        "due_next": window_of(NOW - timedelta(hours=1) + SIZE, SIZE),
        "open": window_of(NOW, SIZE),
    }
    with begin_write(engine) as conn:
        for key, drifted in (("older", {"n-1"}), ("latest", {"n-2", "n-3"})):
            w = windows[key]
            results.save_window(
                conn, pump, w.start, w.end, drift(w, drifted), model_version_id=None,
                n_reference=900,
            )  # fmt: skip
    for key in ("due", "due_next", "open"):
        store_records(engine, pump, by_name["n-1"], windows[key], 5)
    return windows


@pytest.fixture
def worker_metrics(engine: Engine) -> Iterator[str]:
    """The URL of /metrics of a worker whose clock stops at NOW."""
    metrics = WorkerMetrics(engine, Worker(engine, CONFIG, clock=lambda: NOW), OFFLINE_AFTER)
    metrics.serve("127.0.0.1", 0)
    yield f"http://127.0.0.1:{metrics.port}/metrics"
    metrics.stop()


def test_fleet_gauges_read_the_database(fleet: dict[str, Window], worker_metrics: str) -> None:
    metrics = scrape(worker_metrics)

    assert metrics.value("edge_monitor_fleet_database_up") == 1
    statuses = {
        labels["status"]: value for labels, value in metrics.matching("edge_monitor_fleet_nodes")
    }
    assert statuses == {"online": 3, "degraded": 1, "offline": 1, "silent": 1}
    # Node verdicts of the latest analysed window only (n-1 drifted in the one before).
    assert metrics.value("edge_monitor_fleet_nodes_drifting", model="pump") == 2
    assert metrics.value("edge_monitor_fleet_nodes_drifting", model="idle") == 0
    assert metrics.value("edge_monitor_analysis_windows", model="pump") == 2
    assert metrics.value("edge_monitor_analysis_latest_window_end_seconds", model="pump") == (
        fleet["latest"].end.timestamp()
    )
    # The oldest window waiting: it ended (NOW - due.end) ago; the open one is not due.
    lag = metrics.value("edge_monitor_analysis_lag_seconds", model="pump")
    assert lag == pytest.approx((NOW - fleet["due"].end).total_seconds())
    assert metrics.value("edge_monitor_analysis_windows_due", model="pump") == 2
    assert metrics.value("edge_monitor_analysis_lag_seconds", model="idle") == 0
    assert metrics.value("process_resident_memory_bytes") > 0


def test_alerts_the_outbox_and_retrain_runs_are_gauges(engine: Engine, worker_metrics: str) -> None:
    stamps = {"created_at": NOW, "updated_at": NOW}
    with begin_write(engine) as conn:
        model = models.add_model(conn, "pump").id
        rule = conn.execute(
            insert(tables.alert_rules).values(
                name="r",
                model_id=model,
                kind="scope_drift",
                params={},
                scope="fleet",
                hooks=[],
                **stamps,
            )
        ).inserted_primary_key[0]
        alert = {
            "rule_id": rule,
            "model_id": model,
            "summary": "s",
            "subjects": [],
            "details": {},
            "fired_at": NOW,
            "updated_at": NOW,
        }
        for episode, (state, severity) in enumerate(
            [
                ("firing", "critical"),
                ("firing", "warning"),
                ("firing", "warning"),
                ("resolved", "warning"),
            ],
            1,
        ):
            conn.execute(
                insert(tables.alerts).values(
                    group_key="fleet", episode=episode, state=state, severity=severity, **alert
                )
            )
        endpoint = conn.execute(
            insert(tables.webhook_endpoints).values(
                name="ops", url="https://example.com/hook", secret="whsec_x", **stamps
            )
        ).inserted_primary_key[0]
        for n, status in enumerate(["pending", "pending", "delivered", "failed"]):
            conn.execute(
                insert(tables.webhook_messages).values(
                    endpoint_id=endpoint,
                    message_id=f"msg_{n}",
                    event_type="alert.fired",
                    body=b"{}",
                    status=status,
                    next_attempt_at=NOW,
                    created_at=NOW,
                )
            )
        for status in ("promoted", "rolled_back", "rolled_back"):
            conn.execute(
                insert(tables.retrain_runs).values(
                    model_id=model, trigger="alert", status=status, details={}, **stamps
                )
            )  # fmt: skip

    metrics = scrape(worker_metrics)

    firing = {labels["severity"]: v for labels, v in metrics.matching("edge_monitor_alerts_firing")}
    assert firing == {"info": 0, "warning": 2, "critical": 1}
    assert metrics.value("edge_monitor_webhook_messages", status="pending") == 2
    assert metrics.value("edge_monitor_webhook_messages", status="delivered") == 1
    assert metrics.value("edge_monitor_webhook_messages", status="failed") == 1
    assert metrics.value("edge_monitor_webhook_messages", status="dropped") == 0
    assert metrics.value("edge_monitor_retrain_runs", status="rolled_back") == 2
    assert metrics.value("edge_monitor_retrain_runs", status="promoted") == 1


def test_a_scrape_reads_the_database_again(
    engine: Engine, fleet: dict[str, Window], worker_metrics: str
) -> None:
    before = scrape(worker_metrics)
    with begin_write(engine) as conn:
        nodes.revoke_node(conn, "old")

    after = scrape(worker_metrics)

    assert before.value("edge_monitor_fleet_nodes", status="offline") == 1
    assert after.value("edge_monitor_fleet_nodes", status="offline") == 0


def test_the_worker_counts_its_analysis_runs(engine: Engine) -> None:
    metrics = WorkerMetrics(engine, Worker(engine, CONFIG), OFFLINE_AFTER)
    metrics.analysed(0, 0.5)  # a run that found nothing to do leaves the last run's figures
    metrics.analysed(3, 1.5)
    metrics.analysed(0, 0.1)
    metrics.analysed(2, 0.75)

    seen = Exposition(_render(metrics))

    assert seen.value("edge_monitor_worker_windows_analysed_total") == 5
    assert seen.value("edge_monitor_worker_last_analysis_seconds") == 0.75
    assert seen.value("edge_monitor_worker_last_analysis_windows") == 2


def test_a_database_that_cannot_be_read_is_a_gauge_not_a_failed_scrape(tmp_path: Path) -> None:
    from monitor.storage.engine import make_engine

    # A database without our tables: every read fails.
    broken = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    metrics = WorkerMetrics(broken, Worker(broken, CONFIG), OFFLINE_AFTER)

    seen = Exposition(_render(metrics))

    assert seen.value("edge_monitor_fleet_database_up") == 0
    assert seen.matching("edge_monitor_fleet_nodes") == []
    broken.dispose()


def test_a_started_scheduler_serves_metrics_and_frees_the_port_when_shut_down(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = Settings(
        database_url=db_url, data_dir=tmp_path, host="127.0.0.1", worker_metrics_port=port
    )
    schedule = scheduler.build_scheduler(engine, settings, blocking=False)
    with pytest.raises(httpx.ConnectError):  # built, not started: nothing listens yet
        httpx.get(f"http://127.0.0.1:{port}/metrics")

    schedule.start(paused=True)
    try:
        metrics = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        schedule.shutdown(wait=False)

    assert metrics.value("edge_monitor_fleet_database_up") == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics")


def test_port_zero_turns_the_worker_metrics_off(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path, worker_metrics_port=0)
    schedule = scheduler.build_scheduler(engine, settings, blocking=False)

    schedule.start(paused=True)
    try:
        assert scheduler.worker_metrics().port is None
    finally:
        schedule.shutdown(wait=False)


def _render(metrics: WorkerMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
