"""Prometheus metrics of the edge runtime's server (``GET /metrics`` of ``edge serve``).

Counts come from the runtime's telemetry and the SDK Monitor's ``stats()`` at scrape time, so
they are the very figures the heartbeats carry; only the latency histogram is observed per
prediction. The SDK's figures are those of the Monitor of the version served now, labelled
``model_version``: after a hot swap the new version's series start from zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.runtime.runtime import EdgeRuntime

#: Prediction latency buckets, seconds: a small model on a CPU answers in about a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# ``*_created`` series (a timestamp per label set) double the exposition and nobody graphs them.
disable_created_metrics()


class RuntimeMetrics:
    """One server's registry: predictions, their latency, errors, the SDK's drops and spool,
    and process metrics."""

    def __init__(self, runtime: EdgeRuntime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._latency = Histogram(
            "edge_monitor_prediction_seconds",
            "Latency of a served prediction (preprocessing, inference, logging), as the answer's "
            "latency_ms states it.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_TelemetryCollector(runtime))
        ProcessCollector(registry=self.registry)

    def predicted(self, seconds: float) -> None:
        """Observe one served prediction's latency."""
        self._latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _TelemetryCollector(Collector):
    """The runtime's counters and the current Monitor's, read when scraped."""

    def __init__(self, runtime: EdgeRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        telemetry = self.runtime.telemetry()
        version = str(telemetry["model_version"])
        served = CounterMetricFamily(
            "edge_monitor_predictions",
            "Predictions served (rows answered), by model version.",
            labels=["model_version"],
        )
        served.add_metric([version], telemetry["rows"])
        yield served
        errors = CounterMetricFamily(
            "edge_monitor_prediction_errors",
            "Requests that got no prediction, by code (the first detail's code of the error "
            "answer, as the heartbeat's runtime telemetry counts them).",
            labels=["code"],
        )
        for code, count in sorted(telemetry["errors"].items()):
            errors.add_metric([str(code)], count)
        yield errors
        # A Monitor stand-in without counters (tests, a caller's own) has no SDK figures.
        stats = getattr(self.runtime.monitor, "stats", None)
        if stats is not None:
            yield from _sdk(stats(), version)


def _sdk(stats: dict[str, Any], version: str) -> Iterator[Metric]:
    """The SDK Monitor's counters (``Monitor.stats()``, the heartbeat's ``sdk`` object)."""
    if not stats:  # the Monitor could not read its own counters (it counted that)
        return
    dropped = CounterMetricFamily(
        "edge_monitor_sdk_dropped",
        "Records the SDK did not deliver, by reason (sampled_out, queue_full, spool_overflow, "
        "expired, rejected, ...).",
        labels=["model_version", "reason"],
    )
    for reason, count in sorted(stats.get("dropped", {}).items()):
        dropped.add_metric([version, str(reason)], count)
    yield dropped
    for key, name, help_text in (
        ("logged", "edge_monitor_sdk_logged", "Records logged by the runtime to the SDK."),
        ("delivered", "edge_monitor_sdk_delivered", "Records the collector acknowledged."),
    ):
        family = CounterMetricFamily(name, help_text, labels=["model_version"])
        family.add_metric([version], stats.get(key, 0))
        yield family
    for key, name, help_text in (
        (
            "spool_bytes",
            "edge_monitor_sdk_spool_bytes",
            "Bytes of records waiting in the on-disk spool.",
        ),
        (
            "spool_records",
            "edge_monitor_sdk_spool_records",
            "Records waiting in the on-disk spool.",
        ),
        ("queue_depth", "edge_monitor_sdk_queue_depth", "Records waiting in the memory queue."),
    ):
        gauge = GaugeMetricFamily(name, help_text, labels=["model_version"])
        gauge.add_metric([version], stats.get(key, 0))
        yield gauge
