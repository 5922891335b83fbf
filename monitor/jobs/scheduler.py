"""The worker's schedule (APScheduler 3, jobs persisted in the database) and its jobs.

Every worker process registers the same jobs under fixed ids; the database job store keeps
them across restarts. Several workers may run against one PostgreSQL: each runs the jobs on
its own clock, and the leases inside the jobs make every window's work happen once. A started
scheduler serves the worker's Prometheus ``/metrics`` on ``worker_metrics_port`` (0: off).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import Engine

from monitor.analysis import AnalysisPolicy, DriftPolicy, QualityThresholds
from monitor.analysis.policy import EstimationPolicy
from monitor.config import Settings
from monitor.jobs.alerts import evaluate_nodes
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.canary import judge_canaries
from monitor.jobs.deliveries import deliver_due
from monitor.jobs.health import HealthRules, check_fleet
from monitor.jobs.metrics import WorkerMetrics
from monitor.jobs.retrain import consider_produced, run_queued
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow

log = logging.getLogger(__name__)

#: Seconds between passes of the webhook delivery job (at most the alerts interval): a message
#: written with an alert goes out within this.
DELIVERY_EVERY_SECONDS = 5

_worker: Worker | None = None
_settings: Settings | None = None
_health_rules = HealthRules()
_metrics: WorkerMetrics | None = None


def analysis_config(settings: Settings) -> AnalysisConfig:
    """The analysis settings as the job takes them."""
    return AnalysisConfig(
        window=timedelta(minutes=settings.analysis_window_minutes),
        grace=timedelta(seconds=settings.analysis_grace_seconds),
        lookback=timedelta(hours=settings.analysis_lookback_hours),
        policy=AnalysisPolicy(
            drift=DriftPolicy(min_rows=settings.analysis_min_rows, fdr=settings.analysis_fdr),
            quality=QualityThresholds(
                max_missing_share=settings.quality_max_missing_share,
                max_out_of_range_share=settings.quality_max_out_of_range_share,
                max_new_category_share=settings.quality_max_new_category_share,
            ),
            min_labels=settings.analysis_min_labels,
            estimation=EstimationPolicy(
                min_rows=settings.estimation_min_rows,
                check_labels=settings.estimation_check_labels,
            ),
        ),
        lease=timedelta(seconds=settings.analysis_lease_seconds),
        late_horizon=timedelta(hours=settings.analysis_late_horizon_hours),
        pool_windows=settings.analysis_pool_max_windows,
    )


def install_worker(engine: Engine, settings: Settings) -> Worker:
    """Make this process a worker: the jobs below run with this engine and settings."""
    global _worker, _health_rules, _metrics, _settings
    _worker = Worker(engine, analysis_config(settings))
    _settings = settings
    _health_rules = HealthRules(
        offline_after=timedelta(seconds=settings.health_offline_after_seconds)
    )
    if _metrics is not None:
        _metrics.stop()
    _metrics = WorkerMetrics(engine, _worker, _health_rules.offline_after)
    return _worker


def worker_metrics() -> WorkerMetrics:
    """This worker's metrics (``install_worker`` made them)."""
    if _metrics is None:
        raise RuntimeError("this process is not a worker: call install_worker first")
    return _metrics


def analyse_windows() -> None:
    """Job: analyse every closed window nobody has analysed yet, then again every window whose
    records arrived after its analysis."""
    started = time.perf_counter()
    count = _current().run_due()
    late = _current().reopen_late()
    worker_metrics().analysed(count + late, time.perf_counter() - started)
    if count:
        log.info("analysed %d window(s)", count)
    if late:
        log.info("analysed %d window(s) for records that arrived after their analysis", late)


def refresh_performance() -> None:
    """Job: recompute accuracy of analysed windows whose records got labels since."""
    _current().refresh_performance()


def check_health() -> None:
    """Job: judge every node's health from its heartbeats."""
    with begin_write(_current().engine) as conn:
        check_fleet(conn, _health_rules)


def alert_on_nodes() -> None:
    """Job: judge the node rules (offline, clock skew, SDK drops, latency) on fleet health."""
    settings = _current_settings()
    evaluate_nodes(
        _current().engine,
        now=utcnow(),
        offline_after=_health_rules.offline_after,
        tick=timedelta(seconds=settings.alerts_interval_seconds),
        clock_skew_for=_health_rules.clock_skew_for,
    )


def deliver_webhooks() -> None:
    """Job: send the webhook messages that are due, until none is (or a pass sends none)."""
    while deliver_due(_current().engine, _current_settings()) > 0:
        pass


def run_retrains() -> None:
    """Job: run queued retrain runs, and take produced versions to the promotion gate."""
    settings = _current_settings()
    run_queued(_current().engine, settings)
    consider_produced(_current().engine, settings)


def watch_canaries() -> None:
    """Job: judge running canaries: roll out to every node, or roll back."""
    judge_canaries(_current().engine, _current_settings())


def catch_up(progress: Callable[[int, int], None] | None = None) -> int:
    """Run every job once now (a worker's start, or `worker --once`); returns windows analysed."""
    worker = _current()
    started = time.perf_counter()
    analysed = worker.run_due(progress=progress)
    analysed += worker.reopen_late(progress=progress)
    worker_metrics().analysed(analysed, time.perf_counter() - started)
    worker.refresh_performance()
    check_health()
    alert_on_nodes()
    run_retrains()
    watch_canaries()
    deliver_webhooks()
    return analysed


def build_scheduler(engine: Engine, settings: Settings, *, blocking: bool) -> BaseScheduler:
    """A scheduler with the worker's jobs in the database job store; once started, it serves
    the worker's ``/metrics`` on ``settings.host:settings.worker_metrics_port`` (unless 0)."""
    install_worker(engine, settings)
    scheduler_class = _BlockingWorker if blocking else _BackgroundWorker
    scheduler = scheduler_class(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        # A retrain may take minutes: the other jobs keep their threads meanwhile.
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone="UTC",
    )
    every = settings.analysis_interval_seconds
    alerts_every = settings.alerts_interval_seconds
    jobs = (
        ("analyse-windows", analyse_windows, every),
        ("refresh-performance", refresh_performance, every),
        ("check-health", check_health, max(5, settings.health_offline_after_seconds // 4)),
        ("alert-on-nodes", alert_on_nodes, alerts_every),
        ("deliver-webhooks", deliver_webhooks, min(DELIVERY_EVERY_SECONDS, alerts_every)),
        ("run-retrains", run_retrains, alerts_every),
        ("watch-canaries", watch_canaries, every),
    )
    for job_id, function, seconds in jobs:
        scheduler.add_job(
            f"{__name__}:{function.__name__}",
            "interval",
            seconds=seconds,
            id=job_id,
            name=function.__doc__,
            replace_existing=True,
        )
    scheduler.metrics_address = (
        (settings.host, settings.worker_metrics_port) if settings.worker_metrics_port else None
    )
    return scheduler


class _ServesMetrics(BaseScheduler):
    """A scheduler that serves the worker's ``/metrics`` while it runs. The port is taken when
    the scheduler starts (``worker --once`` never starts one, so it binds nothing); a taken
    port fails the start."""

    metrics_address: tuple[str, int] | None = None

    def start(self, *args: Any, **kwargs: Any) -> None:
        if self.metrics_address is not None:
            worker_metrics().serve(*self.metrics_address)
        try:
            super().start(*args, **kwargs)
        except BaseException:
            worker_metrics().stop()
            raise

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)
        worker_metrics().stop()


class _BackgroundWorker(_ServesMetrics, BackgroundScheduler):
    pass


class _BlockingWorker(_ServesMetrics, BlockingScheduler):
    def start(self, *args: Any, **kwargs: Any) -> None:
        # Runs the jobs until shut down: the metrics stop with it.
        try:
            super().start(*args, **kwargs)
        finally:
            worker_metrics().stop()


def _current_settings() -> Settings:
    if _settings is None:
        raise RuntimeError("this process is not a worker: call install_worker first")
    return _settings


def _current() -> Worker:
    if _worker is None:
        raise RuntimeError("this process is not a worker: call install_worker first")
    return _worker
