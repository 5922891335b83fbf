"""The worker's Prometheus metrics: fleet gauges read from the database at each scrape, this
worker's analysis runs, and its process metrics; served on ``/metrics`` by a small HTTP server.

Fleet gauges are the database's figures, so every worker against one database shows the same
values; the ``edge_monitor_worker_*`` metrics are this worker process's own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from monitor.jobs.analysis import Worker
from monitor.storage import fleet
from monitor.storage.types import utcnow

log = logging.getLogger(__name__)


class FleetCollector(Collector):
    """Fleet gauges, read from the database when scraped."""

    def __init__(self, engine: Engine, worker: Worker, offline_after: timedelta) -> None:
        self.engine = engine
        self.worker = worker
        self.offline_after = offline_after

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "edge_monitor_fleet_database_up",
            "1 when the worker read the fleet gauges from the database at this scrape, else 0 "
            "(and the fleet gauges are missing).",
        )
        try:
            families = self._read(self.worker.clock())
        except Exception as exc:  # a scrape says the database is down rather than failing
            log.warning("fleet gauges: the database could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: datetime) -> list[Metric]:
        with self.engine.connect() as conn:
            statuses = fleet.nodes_by_status(conn, now - self.offline_after)
            analysed = fleet.analysis_by_model(conn)
            firing = fleet.firing_alerts(conn)
            outbox = fleet.webhook_messages_by_status(conn)
            retrains = fleet.retrain_runs_by_status(conn)
        due = self.worker.due_windows(now)
        nodes = GaugeMetricFamily(
            "edge_monitor_fleet_nodes",
            "Live nodes (not revoked, role node) by health: online and degraded (a heartbeat "
            "within MONITOR_HEALTH_OFFLINE_AFTER_SECONDS; degraded as the health job last "
            "judged), offline (older), silent (never).",
            labels=["status"],
        )
        for status, count in statuses.items():
            nodes.add_metric([status], count)
        drifting = GaugeMetricFamily(
            "edge_monitor_fleet_nodes_drifting",
            "Nodes whose drift verdict is drifted in the model's latest analysed window.",
            labels=["model"],
        )
        windows = GaugeMetricFamily(
            "edge_monitor_analysis_windows",
            "Windows of the model analysed so far (with results in the database).",
            labels=["model"],
        )
        latest = GaugeMetricFamily(
            "edge_monitor_analysis_latest_window_end_seconds",
            "Unix time at which the model's latest analysed window ends.",
            labels=["model"],
        )
        lag = GaugeMetricFamily(
            "edge_monitor_analysis_lag_seconds",
            "Seconds since the end of the model's oldest window that is due (closed, past its "
            "grace, with records) but not analysed; 0 when none is waiting.",
            labels=["model"],
        )
        waiting = GaugeMetricFamily(
            "edge_monitor_analysis_windows_due",
            "Windows of the model that are due but not analysed yet.",
            labels=["model"],
        )
        oldest: dict[str, datetime] = {}
        pending: dict[str, int] = {}
        for model, window in due:  # oldest first
            oldest.setdefault(model.name, window.end)
            pending[model.name] = pending.get(model.name, 0) + 1
        for row in analysed:
            drifting.add_metric([row.model], row.nodes_drifting)
            windows.add_metric([row.model], row.windows_analysed)
            if row.latest_window_end is not None:
                latest.add_metric([row.model], row.latest_window_end.timestamp())
            behind = oldest.get(row.model)
            lag.add_metric([row.model], (now - behind).total_seconds() if behind else 0.0)
            waiting.add_metric([row.model], pending.get(row.model, 0))
        alerting = GaugeMetricFamily(
            "edge_monitor_alerts_firing",
            "Alerts firing now, by the severity of their rule.",
            labels=["severity"],
        )
        for severity, count in firing.items():
            alerting.add_metric([severity], count)
        messages = GaugeMetricFamily(
            "edge_monitor_webhook_messages",
            "Webhook messages by status: pending and delivering (the outbox), delivered, "
            "failed (retries given up) and dropped (their endpoint was disabled).",
            labels=["status"],
        )
        for status, count in outbox.items():
            messages.add_metric([status], count)
        runs = GaugeMetricFamily(
            "edge_monitor_retrain_runs",
            "Retrain runs by status (queued, running, produced, gated, canary, promoted, "
            "rolled_back, failed, timed_out).",
            labels=["status"],
        )
        for status, count in sorted(retrains.items()):
            runs.add_metric([status], count)
        return [nodes, drifting, windows, latest, lag, waiting, alerting, messages, runs]


class WorkerMetrics:
    """This worker's registry: fleet gauges, analysis runs, process metrics."""

    def __init__(self, engine: Engine, worker: Worker, offline_after: timedelta) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(FleetCollector(engine, worker, offline_after))
        self._windows = Counter(
            "edge_monitor_worker_windows_analysed",
            "Windows this worker process analysed (its leases completed).",
            registry=self.registry,
        )
        self._last_seconds = Gauge(
            "edge_monitor_worker_last_analysis_seconds",
            "How long this worker's last analysis run that analysed a window took.",
            registry=self.registry,
        )
        self._last_windows = Gauge(
            "edge_monitor_worker_last_analysis_windows",
            "Windows analysed by that run.",
            registry=self.registry,
        )
        self._last_at = Gauge(
            "edge_monitor_worker_last_analysis_end_seconds",
            "Unix time at which that run ended.",
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def analysed(self, windows: int, seconds: float) -> None:
        """Record one analysis run (of the analyse-windows job or the worker's catch-up)."""
        if windows:
            self._windows.inc(windows)
            self._last_seconds.set(seconds)
            self._last_windows.set(windows)
            self._last_at.set(utcnow().timestamp())

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` listens on (None when not serving)."""
        return None if self._server is None else int(self._server.server_port)

    def serve(self, host: str, port: int) -> None:
        """Listen for scrapes on ``host:port`` (0: any free port); OSError when it is taken."""
        if self._server is None:
            self._server, self._thread = start_http_server(port, host, self.registry)
            log.info("worker metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
