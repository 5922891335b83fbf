"""A simulated fleet lived window by window through the worker, for the estimation tests.

The demo model and a fleet of nodes at four sites are stored as ``tests/jobs/fleetdata.py``
stores them (readings from the fleet generator under a scenario, the real ONNX model's
predictions, the collector's storage functions). Then, window after window, as a deployment
lives it: the window's records arrive; labels of earlier records trickle in (a share of each
node's records of the previous window, picked at random); the worker refreshes the windows that
got labels and analyses the window that just closed. What the worker stored for each window's
estimate is read back as it was at its first analysis and as it is at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from monitor.fleet.scenarios import NodePlan, Scenario, scenario
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.schema import EstimationScope
from monitor.storage import results
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels
from tests.jobs.fleetdata import (
    WINDOW,
    Stored,
    register_demo_model,
    register_fleet,
    send_labels,
    store_readings,
)

T0 = datetime(2026, 11, 20, tzinfo=UTC)
GRACE = timedelta(minutes=1)
CONFIG = AnalysisConfig(window=WINDOW, grace=GRACE, lookback=timedelta(days=30))

ScopeKey = tuple[str, str]
FLEET_SCOPE: ScopeKey = ("fleet", "")


def window_start(window: int) -> datetime:
    return T0 + window * WINDOW


def closed(window: int) -> datetime:
    """The moment window number ``window`` is due: its end plus the grace period."""
    return window_start(window + 1) + GRACE


def release(engine: Engine, model_id: int, stored: Stored, share: float, seed: int) -> int:
    """Store the true labels of a random ``share`` of each node's records in ``stored`` (the
    labels that came back: which ones does not follow the records' order)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    for pairs in stored.labels.values():
        picked = rng.choice(len(pairs), size=int(len(pairs) * share), replace=False)
        rows.extend({"request_id": pairs[i][0], "label": pairs[i][1]} for i in sorted(picked))
    with begin_write(engine) as conn:
        upsert_labels(conn, model_id=model_id, node_id=None, rows=rows)
    return len(rows)


@dataclass
class EstimationFleet:
    """A scenario's fleet in one database, its worker, and what the worker stored."""

    engine: Engine
    model_id: int
    plans: list[NodePlan]
    plan: Scenario
    windows: int
    per_node: int
    seed: int
    worker: Worker
    stored: list[Stored] = field(default_factory=list)
    #: Per window, its estimates as the worker stored them at its first analysis.
    first: list[dict[ScopeKey, EstimationScope]] = field(default_factory=list)

    @classmethod
    def register(
        cls,
        engine: Engine,
        name: str,
        *,
        nodes: int,
        windows: int,
        per_node: int,
        seed: int = 3,
    ) -> EstimationFleet:
        """The demo model and ``nodes`` nodes at four sites; the scenario spans ``windows``
        windows (its change begins a third of the way in, at the first site)."""
        model_id = register_demo_model(engine)
        plans = register_fleet(engine, nodes, sites=4)
        plan = scenario(name, hours=24.0 * windows, sites=sorted({p.site for p in plans}))
        return cls(engine, model_id, plans, plan, windows, per_node, seed, Worker(engine, CONFIG))

    def live(self, *, trickle: float = 0.0) -> None:
        """Every window in turn: its records arrive; ``trickle`` of each node's records of the
        previous window get their labels; then the worker refreshes what got labels and
        analyses the window (the order of a worker that polls labels and windows in one
        loop)."""
        for window in range(self.windows):
            start = window_start(window)
            self.stored.append(
                store_readings(
                    self.engine,
                    self.model_id,
                    self.plans,
                    self.plan,
                    start,
                    start + WINDOW,
                    self.per_node,
                    t0=T0,
                    seed=self.seed,
                )
            )
            if trickle and window > 0:
                release(self.engine, self.model_id, self.stored[window - 1], trickle, window)
                # Labels are stamped with the wall clock when they arrive, and so is the
                # worker's watermark of labels seen: the refresh runs on the wall clock.
                assert self.worker.refresh_performance() == 1
            assert self.worker.run_due(now=closed(window)) == 1
            self.first.append(self.estimates(window))

    def release_all(self) -> int:
        """Every record's label arrives; the worker refreshes every window; returns how many
        windows it refreshed."""
        for stored in self.stored:
            send_labels(self.engine, self.model_id, stored)
        return self.worker.refresh_performance()

    def estimates(self, window: int) -> dict[ScopeKey, EstimationScope]:
        """The window's estimates as stored now, by scope."""
        start = window_start(window)
        with self.engine.connect() as conn:
            rows = results.estimation(conn, self.model_id, start=start, end=start + WINDOW)
        return {(r.scope_kind, r.scope_key): r.result for r in rows}

    def affected(self) -> list[str]:
        """The nodes the scenario changes."""
        return [p.name for p in self.plans if self.plan.affects(p)]

    def unaffected(self) -> list[str]:
        return [p.name for p in self.plans if not self.plan.affects(p)]

    def onset_window(self) -> int:
        """The window in which the scenario's change begins."""
        return round(self.plan.onset_hour / 24)

    def complete_window(self) -> int:
        """The first window after the change has fully ramped in."""
        return round((self.plan.onset_hour + self.plan.ramp_hours) / 24)
