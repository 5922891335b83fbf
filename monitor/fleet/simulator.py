"""A simulated fleet: every node runs the real runtime and SDK against a real collector.

Each node has its own token, site and group, its own ``EdgeRuntime`` (ONNX inference) logging
through its own SDK Monitors, and its own updater polling the collector for model rollouts.
Readings come from ``MachineFleetGenerator`` under a ``Scenario``; ground truth follows each
prediction after ``label_delay`` seconds for a ``label_coverage`` share of them.

Time: records carry real timestamps, while the machines live on a simulated clock running
``speed`` times faster (default 96: one 15-minute analysis window is one simulated day, so a
steady fleet's windows hold whole day/night cycles, like the reference data).
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.fleet.machines import MachineFleetGenerator
from monitor.fleet.scenarios import NodePlan, Scenario
from monitor.runtime import EdgeRuntime, ModelCard, ModelUpdater, VersionedMonitors

log = logging.getLogger(__name__)

#: How often each driver thread generates the next slice of readings, in seconds.
TICK = 0.25


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate and how the nodes talk to the collector."""

    rate: float = 5.0  # records per second per node
    duration: float = 60.0  # real seconds
    seed: int = 0
    speed: float = 96.0  # simulated seconds per real second
    label_delay: float = 5.0  # real seconds between a prediction and its label
    label_coverage: float = 0.5  # share of predictions that get a label
    sample_rate: float = 1.0
    spool_root: Path | None = None  # None: memory-only Monitors
    poll_interval: float = 10.0  # seconds between assignment polls (hot swaps)
    heartbeat_interval: float = 10.0
    threads: int = 4  # driver threads shared by all nodes

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration <= 0 or self.speed <= 0:
            raise ValueError("rate, duration and speed must be positive")
        if not 0 <= self.label_coverage <= 1 or not 0 <= self.sample_rate <= 1:
            raise ValueError("label_coverage and sample_rate must be in [0, 1]")


@dataclass
class NodeStats:
    """What one simulated node did."""

    predictions: int = 0
    invalid: int = 0
    labels: int = 0


@dataclass
class _Node:
    plan: NodePlan
    runtime: EdgeRuntime
    updater: ModelUpdater
    monitors: VersionedMonitors
    generator: MachineFleetGenerator
    draw: Callable[[], float]  # uniform [0, 1): which predictions get a label
    stats: NodeStats = field(default_factory=NodeStats)
    labels: list[tuple[float, str, str]] = field(default_factory=list)  # (due, request, label)
    carry: float = 0.0  # fractional readings owed from earlier ticks


@dataclass(frozen=True)
class SimulationResult:
    """Totals of a run, and each node's SDK counters."""

    predictions: int
    invalid: int
    labels: int
    delivered: int
    dropped: dict[str, int]
    versions: dict[str, str]  # node -> model version it ran at the end
    seconds: float


class FleetSimulator:
    """Runs a fleet of simulated nodes for ``config.duration`` seconds."""

    def __init__(
        self,
        url: str,
        tokens: Mapping[str, str],
        plans: Sequence[NodePlan],
        scenario: Scenario,
        model: bytes,
        card: ModelCard | Mapping[str, Any],
        config: SimulationConfig,
    ) -> None:
        missing = [p.name for p in plans if p.name not in tokens]
        if missing:
            raise ValueError(f"no token for nodes {missing[:5]}")
        self.config = config
        self.scenario = scenario
        self._stopping = threading.Event()
        card = card if isinstance(card, ModelCard) else ModelCard.from_dict(dict(card))
        root = MachineFleetGenerator(config.seed)
        self.nodes: list[_Node] = []
        for plan in plans:
            monitors = VersionedMonitors(
                url,
                tokens[plan.name],
                card.name,
                spool_root=(config.spool_root / plan.name) if config.spool_root else False,
                sample_rate=config.sample_rate,
                heartbeat_interval=config.heartbeat_interval,
                flush_interval=0.5,
                atexit_timeout=0,
            )
            runtime = EdgeRuntime(model, card, monitor=monitors)
            updater = ModelUpdater(runtime, url, tokens[plan.name], interval=config.poll_interval)
            draw = _label_draws(config.seed, plan.name)
            self.nodes.append(_Node(plan, runtime, updater, monitors, root.child(plan.name), draw))

    def run(self, progress: Callable[[float, int], None] | None = None) -> SimulationResult:
        """Drive every node until the duration has passed, flush, and report."""
        for node in self.nodes:
            node.updater.start()
        started = time.monotonic()
        stop = threading.Event()
        shares = [self.nodes[i :: self.config.threads] for i in range(self.config.threads)]
        drivers = [
            threading.Thread(target=self._drive, args=(share, started, stop), daemon=True)
            for share in shares
            if share
        ]
        for driver in drivers:
            driver.start()
        try:
            while time.monotonic() - started < self.config.duration and not self._stopping.is_set():
                left = self.config.duration - (time.monotonic() - started)
                self._stopping.wait(min(0.5, max(0.0, left)))
                if progress is not None:
                    done = min(1.0, (time.monotonic() - started) / self.config.duration)
                    progress(done, sum(n.stats.predictions for n in self.nodes))
        finally:
            stop.set()
            for driver in drivers:
                driver.join()
        self._deliver_due_labels(math.inf)
        return self._finish(time.monotonic() - started)

    def stop(self) -> None:
        """End ``run`` early (from another thread or its progress callback): the nodes stop
        predicting, then flush and report as at the end of the duration."""
        self._stopping.set()

    def _drive(self, nodes: list[_Node], started: float, stop: threading.Event) -> None:
        previous = 0.0
        while not stop.is_set():
            elapsed = time.monotonic() - started
            for node in nodes:
                self._tick(node, previous, elapsed)
            self._deliver_due_labels(time.monotonic(), nodes)
            previous = elapsed
            stop.wait(TICK)

    def _tick(self, node: _Node, since: float, until: float) -> None:
        owed = node.carry + self.config.rate * (until - since)
        count = int(owed)
        node.carry = owed - count
        if count <= 0:
            return
        hour = since * self.config.speed / 3600
        hours = max((until - since) * self.config.speed / 3600, 1e-9)
        readings = node.generator.readings(
            count, start_hour=hour, hours=hours, **self.scenario.knobs(node.plan, hour)
        )
        truth = readings.labels()
        for row, label in zip(readings.rows(), truth, strict=True):
            try:
                prediction = node.runtime.predict(row)
            except Exception:  # invalid input is counted by the runtime, as on a real node
                node.stats.invalid += 1
                continue
            node.stats.predictions += 1
            if node.draw() < self.config.label_coverage:
                due = time.monotonic() + self.config.label_delay
                heapq.heappush(node.labels, (due, prediction.request_id, label))

    def _deliver_due_labels(self, now: float, nodes: Sequence[_Node] | None = None) -> None:
        for node in nodes if nodes is not None else self.nodes:
            while node.labels and node.labels[0][0] <= now:
                _, request_id, label = heapq.heappop(node.labels)
                node.runtime.log_label(request_id, label)
                node.stats.labels += 1

    def _finish(self, seconds: float) -> SimulationResult:
        delivered = 0
        dropped: dict[str, int] = {}
        versions = {}
        for node in self.nodes:
            node.updater.close()
            versions[node.plan.name] = node.runtime.model_version
            if node.runtime.monitor is not None:
                node.runtime.monitor.flush(timeout=30)
            node.runtime.close(timeout=10)
            # Every version the node ran: a hot swap closes the old version's Monitor, whose
            # counters still hold what it delivered and dropped.
            for monitor in node.monitors.made:
                stats = monitor.stats()
                delivered += stats["delivered"]
                for reason, count in stats["dropped"].items():
                    dropped[reason] = dropped.get(reason, 0) + count
        return SimulationResult(
            predictions=sum(n.stats.predictions for n in self.nodes),
            invalid=sum(n.stats.invalid for n in self.nodes),
            labels=sum(n.stats.labels for n in self.nodes),
            delivered=delivered,
            dropped=dropped,
            versions=versions,
            seconds=seconds,
        )


def _label_draws(seed: int, node: str) -> Callable[[], float]:
    rng = np.random.default_rng([seed, int.from_bytes(node.encode()[-8:].rjust(8, b"\0"), "big")])
    return lambda: float(rng.random())
