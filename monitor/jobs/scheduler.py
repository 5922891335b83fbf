"""The worker's schedule (APScheduler 3, jobs persisted in the database) and its jobs.

Every worker process registers the same jobs under fixed ids; the database job store keeps
them across restarts. Several workers may run against one PostgreSQL: each runs the jobs on
its own clock, and the leases inside the jobs make every window's work happen once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import Engine

from monitor.analysis import AnalysisPolicy, DriftPolicy, QualityThresholds
from monitor.config import Settings
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.health import HealthRules, check_fleet
from monitor.storage.engine import begin_write

log = logging.getLogger(__name__)

_worker: Worker | None = None
_health_rules = HealthRules()


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
        ),
        lease=timedelta(seconds=settings.analysis_lease_seconds),
    )


def install_worker(engine: Engine, settings: Settings) -> Worker:
    """Make this process a worker: the jobs below run with this engine and settings."""
    global _worker, _health_rules
    _worker = Worker(engine, analysis_config(settings))
    _health_rules = HealthRules(
        offline_after=timedelta(seconds=settings.health_offline_after_seconds)
    )
    return _worker


def analyse_windows() -> None:
    """Job: analyse every closed window nobody has analysed yet."""
    count = _current().run_due()
    if count:
        log.info("analysed %d window(s)", count)


def refresh_performance() -> None:
    """Job: recompute accuracy of analysed windows whose records got labels since."""
    _current().refresh_performance()


def check_health() -> None:
    """Job: judge every node's health from its heartbeats."""
    with begin_write(_current().engine) as conn:
        check_fleet(conn, _health_rules)


def catch_up(progress: Callable[[int, int], None] | None = None) -> int:
    """Run every job once now (a worker's start, or `worker --once`); returns windows analysed."""
    worker = _current()
    analysed = worker.run_due(progress=progress)
    worker.refresh_performance()
    check_health()
    return analysed


def build_scheduler(engine: Engine, settings: Settings, *, blocking: bool) -> BaseScheduler:
    """A scheduler with the worker's jobs in the database job store."""
    install_worker(engine, settings)
    scheduler_class = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = scheduler_class(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone="UTC",
    )
    every = settings.analysis_interval_seconds
    jobs = (
        ("analyse-windows", analyse_windows, every),
        ("refresh-performance", refresh_performance, every),
        ("check-health", check_health, max(5, settings.health_offline_after_seconds // 4)),
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
    return scheduler


def _current() -> Worker:
    if _worker is None:
        raise RuntimeError("this process is not a worker: call install_worker first")
    return _worker
