"""The collector's Prometheus metrics (prometheus_client), for one process or several.

One process (``serve --workers 1``, ``BackgroundCollector``, tests): every app has its own
``CollectorRegistry``, so several apps in one process never share a counter; gauges are read
from their callbacks at scrape time and the standard process collector adds ``process_*``.

Several processes (``serve --workers N``): ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before the workers start, every worker writes its values there (memory-mapped
files, one set per pid), and a scrape answered by any worker merges every process's files
(``MultiProcessCollector``), so N requests show as N whichever worker counted them. Callbacks
cannot be read across processes: each worker copies its gauges and its ``process_*`` values
into multi-process gauges every second (``livesum`` for the collector's gauges: the sum over
live workers; ``liveall`` for process metrics: one sample per live worker, labelled ``pid``).
A worker that exits (or is killed) stops counting in live gauges at the next scrape; its
counters stay in the totals, as a counter must.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Environment variable naming the directory of multi-process metrics (prometheus_client's).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Status counted for a request whose client went away before its answer (nginx's 499); it is
#: never sent.
CLIENT_CLOSED = 499
#: Route label of requests refused before their headers were complete (408, 431).
HEADERS_ROUTE = "(headers)"
#: Seconds between two copies of a worker's gauges into the multi-process files.
REFRESH_SECONDS = 1.0

GaugeMode = Literal["livesum", "liveall", "livemax", "livemin", "livemostrecent"]

# ``*_created`` series (a timestamp per label set) double the exposition and nobody graphs them.
disable_created_metrics()

_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


class Metrics:
    """Records by outcome and reason, requests by route, method and status, their latency,
    records-batch latency, gauges read from callbacks, and process metrics.

    Several processes when ``PROMETHEUS_MULTIPROC_DIR`` is set: prometheus_client chooses its
    value storage from that variable when first imported, so the two always agree."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_DIR_ENV) or None
        # Multi-process values live in the directory's files; no registry holds them and a
        # scrape reads the files. One process: this app's own registry.
        self.registry: CollectorRegistry | None = (
            None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        )
        self._records = Counter(
            "edge_monitor_records",
            "Records received, by outcome (accepted, duplicate, rejected) and reason (the "
            "rejection code; empty otherwise).",
            ("outcome", "reason"),
            registry=self.registry,
        )
        self._requests = Counter(
            "edge_monitor_requests",
            f"HTTP requests, by route template, method and status ({CLIENT_CLOSED}: the client "
            f"went away first; route {HEADERS_ROUTE}: refused before its headers were complete; "
            "route unmatched: no route).",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "edge_monitor_request_seconds",
            "HTTP request latency, from the app receiving the request (its headers read) to the "
            "end of the answer, by route template and method.",
            ("route", "method"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "edge_monitor_batch_seconds",
            "Records batch latency, arrival at the route to the answer (after commit).",
            buckets=BUCKETS,
            registry=self.registry,
        )
        # Children by label values: labels() takes a lock and builds a key on every call.
        self._record_children: dict[tuple[str, str], Any] = {}
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._callbacks: dict[str, tuple[Gauge | None, Callable[[], float]]] = {}
        self._gauge_help: dict[str, str] = {}
        if self.registry is not None:
            self.registry.register(_CallbackGauges(self._callbacks, self._gauge_help))
            ProcessCollector(registry=self.registry)
        else:
            self._process = _ProcessGauges()
            _start_refresher(self)

    # --- counting (the hot path) ----------------------------------------------------------

    def records(self, outcome: str, count: int, reason: str = "") -> None:
        """Count records accepted, duplicate, or rejected (with the rejection code)."""
        if count:
            child = self._record_children.get((outcome, reason))
            if child is None:
                child = self._record_children[(outcome, reason)] = self._records.labels(
                    outcome, reason
                )
            child.inc(count)

    def request(
        self, route: str, status: int, method: str = "", seconds: float | None = None
    ) -> None:
        """Count one request by route template, method and status, and its latency (none for
        a request refused before its headers were complete)."""
        counter = self._request_children.get((route, method, status))
        if counter is None:
            counter = self._request_children[(route, method, status)] = self._requests.labels(
                route, method, str(status)
            )
        counter.inc()
        if seconds is not None:
            latency = self._latency_children.get((route, method))
            if latency is None:
                latency = self._latency_children[(route, method)] = self._request_seconds.labels(
                    route, method
                )
            latency.observe(seconds)

    def batch_latency(self, seconds: float) -> None:
        """Time from a records request arriving at its route to its answer, after commit."""
        self._batch_seconds.observe(seconds)

    # --- gauges -----------------------------------------------------------------------------

    def gauge(
        self, name: str, help_text: str, read: Callable[[], float], mode: GaugeMode = "livesum"
    ) -> None:
        """Expose ``name`` as a gauge of ``read()``: read at scrape time in one process, copied
        every second into a multi-process gauge of ``mode`` with several."""
        self._gauge_help[name] = help_text
        gauge = None
        if self.registry is None:
            gauge = Gauge(name, help_text, multiprocess_mode=mode, registry=None)
            gauge.set(read())
        self._callbacks[name] = (gauge, read)

    def refresh(self) -> None:
        """Copy this process's gauges and process metrics into the multi-process files."""
        if self.registry is not None:
            return
        for gauge, read in list(self._callbacks.values()):
            if gauge is not None:
                gauge.set(read())
        self._process.refresh()

    # --- exposition -------------------------------------------------------------------------

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE_PLAIN_0_0_4

    def render(self) -> bytes:
        """The Prometheus text exposition: this app's registry, or every process's files."""
        if self.registry is not None:
            return generate_latest(self.registry)
        assert self.multiprocess_dir is not None
        self.refresh()
        forget_dead_processes(self.multiprocess_dir)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)


class _CallbackGauges(Collector):
    """The gauges of one process, read when scraped."""

    def __init__(
        self,
        callbacks: dict[str, tuple[Gauge | None, Callable[[], float]]],
        help_texts: dict[str, str],
    ) -> None:
        self._callbacks = callbacks
        self._help = help_texts

    def collect(self) -> Any:
        for name, (_gauge, read) in sorted(self._callbacks.items()):
            yield GaugeMetricFamily(name, self._help.get(name, name), value=read())

    def describe(self) -> Any:
        return []


class _ProcessGauges:
    """This worker's ``process_*`` values as multi-process gauges, one sample per live pid."""

    def __init__(self) -> None:
        self._source = ProcessCollector(registry=None)
        self._gauges: dict[str, Gauge] = {}

    def refresh(self) -> None:
        for family in self._source.collect():
            for sample in family.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is None:
                    gauge = self._gauges[sample.name] = Gauge(
                        sample.name,
                        f"{family.documentation} One sample per live collector process (pid).",
                        multiprocess_mode="liveall",
                        registry=None,
                    )
                gauge.set(sample.value)


def _start_refresher(metrics: Metrics) -> None:
    """Copy the process's gauges every second; mark the process dead when it exits."""
    directory = metrics.multiprocess_dir
    assert directory is not None

    def run() -> None:
        while True:
            time.sleep(REFRESH_SECONDS)
            try:
                metrics.refresh()
            except Exception:  # a scrape reads stale values rather than the thread dying
                continue

    metrics.refresh()
    threading.Thread(target=run, name="collector-metrics", daemon=True).start()
    atexit.register(mark_process_dead, os.getpid(), directory)


def forget_dead_processes(directory: str) -> None:
    """Remove the live gauges of processes that no longer run (killed workers never ran their
    exit hook), as prometheus_client's ``mark_process_dead`` does for one pid."""
    pids = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        found = _LIVE_FILE.search(os.path.basename(path))
        if found:
            pids.add(int(found.group(1)))
    for pid in pids:
        if not _running(pid):
            mark_process_dead(pid, directory)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RequestMetrics:
    """Counts every request by route template, method and status, with its latency (pure
    ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            scope["app"].state.collector.metrics.request(
                path, status, scope["method"], time.perf_counter() - started
            )
