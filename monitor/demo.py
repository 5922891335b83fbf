"""`edge-monitor demo`: the core loop on the embedded database, narrated as it happens.

A collector on SQLite, a simulated fleet (real ONNX runtime and SDK per node) playing a
scenario, and the analysis worker judging short windows as they close: the demo prints what
landed, which sites, nodes and features drift, data quality and accuracy, and writes
Evidently's report of the last window.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from monitor.config import Settings

if TYPE_CHECKING:
    from monitor.jobs.analysis import Worker
    from monitor.storage.results import WindowResults


def run_demo(
    settings: Settings,
    *,
    nodes: int = 12,
    duration: float = 80.0,
    window_seconds: float = 20.0,
    scenario: str = "sensor-drift",
    rate: float = 20.0,
) -> int:
    """Run the demo; returns the process exit code."""
    from monitor.analysis import AnalysisPolicy, DriftPolicy
    from monitor.collector.server import BackgroundCollector
    from monitor.fleet.scenarios import plan_fleet
    from monitor.fleet.scenarios import scenario as make_scenario
    from monitor.fleet.simulator import FleetSimulator, SimulationConfig
    from monitor.jobs.analysis import AnalysisConfig, Worker
    from monitor.simulate import register_local
    from monitor.storage import migrations
    from monitor.storage.engine import make_engine

    url = settings.resolved_database_url
    say(f"database: {settings.shown_database_url}")
    migrations.upgrade(url)
    engine = make_engine(url)
    # One window is one simulated day, so windows compare whole day/night cycles; the run
    # lasts whole windows.
    speed = 86_400 / window_seconds
    duration = max(1, round(duration / window_seconds)) * window_seconds
    config = SimulationConfig(
        rate=rate, duration=duration, speed=speed, label_delay=2.0, label_coverage=0.5, seed=7
    )
    run = f"demo-{datetime.now(UTC):%H%M%S}"
    plans = plan_fleet(nodes, sites=4, prefix=run)
    plan = make_scenario(scenario, duration * speed / 3600, sorted({p.site for p in plans}))
    from monitor.demo_model import paths

    files = paths()
    tokens = register_local(settings, plans, files)
    say(f"model pump-failure v1 in production; {nodes} nodes at 4 sites ({run}-*)")
    worker = Worker(
        engine,
        AnalysisConfig(
            window=timedelta(seconds=window_seconds),
            grace=timedelta(seconds=2),
            lookback=timedelta(minutes=10),
            policy=AnalysisPolicy(drift=DriftPolicy(min_rows=100), min_labels=30),
        ),
    )
    narrator = _Narrator(engine, worker, {p.name for p in plans})
    # The narrator tells each window's story; the worker's own line per window would repeat it.
    logging.getLogger("monitor.jobs.analysis").setLevel(logging.ERROR)
    with BackgroundCollector(settings) as collector:
        say(f"collector on {collector.url} (API docs: {collector.url}/docs)")
        say(
            f"scenario {scenario}: {plan.name} from {duration / 3:.0f} s on, at "
            f"{', '.join(sorted(plan.affected_sites)) or 'every site'}; windows of "
            f"{window_seconds:g} s are analysed as they close"
        )
        narrator.start()
        import json

        # Start on a window boundary so that every window holds whole simulated days.
        from monitor.jobs.windows import window_of

        boundary = window_of(datetime.now(UTC), timedelta(seconds=window_seconds)).end
        time.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds()))

        simulator = FleetSimulator(
            collector.url,
            tokens,
            plans,
            plan,
            files.model.read_bytes(),
            json.loads(files.card.read_text()),
            config,
        )
        result = simulator.run()
        narrator.until = boundary + timedelta(seconds=duration)
        time.sleep(3)  # the last window's grace period
        narrator.stop()
    lost = {k: v for k, v in result.dropped.items() if v and k != "sampled_out"}
    say(
        f"{result.predictions} predictions, {result.delivered} records delivered exactly once, "
        f"{result.labels} labels; dropped: {lost or 'none'}"
    )
    last_window = boundary + timedelta(seconds=duration - window_seconds)
    report = _last_report(engine, settings.data_dir, last_window)
    if report is not None:
        say(f"report of the last window (verdicts, with Evidently's plots): {report}")
    engine.dispose()
    return 0


class _Narrator:
    """Runs the worker on a thread and prints each window's verdicts once."""

    def __init__(self, engine: Engine, worker: Worker, node_names: set[str]) -> None:
        self.engine = engine
        self.worker = worker
        self.node_names = node_names
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-worker", daemon=True)
        self._told: set[str] = set()
        #: Windows from here on are stragglers of the run's last moments, not narrated.
        self.until: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._tick()

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            self._tick()

    def _tick(self) -> None:
        from monitor.storage import models, results

        self.worker.run_due()
        self.worker.refresh_performance()
        with self.engine.connect() as conn:
            model = models.get_model(conn, "pump-failure")
            for start, _ in results.analysed_windows(conn, model.id):
                if start.isoformat() in self._told:
                    continue
                stored = results.window(conn, model.id, start)
                if stored is None or not any(
                    s.scope_kind == "node" and s.scope_key in self.node_names for s in stored.drift
                ):
                    continue
                self._told.add(start.isoformat())
                say(window_line(stored, self.node_names))


def window_line(stored: WindowResults, node_names: set[str] | None = None) -> str:
    """One window's story, from its stored results: where it drifted and on what, how many
    nodes drift, accuracy, quality issues."""
    fleet = stored.drift_of()
    nodes = [
        s for s in stored.drift if s.scope_kind == "node" and (
            node_names is None or s.scope_key in node_names)
    ]  # fmt: skip
    parts = [f"window {stored.window_start:%H:%M:%S}: {fleet.result.n_rows} records"]
    if fleet.result.drifted:
        parts.append(f"fleet drifts on {', '.join(stored.drifted_features())}")
    sites = stored.drifting_scopes("site")
    for site in sites:
        features = ", ".join(stored.drifted_features("site", site.scope_key))
        parts.append(f"{site.scope_key} drifts on {features}")
    drifting_nodes = [n for n in nodes if n.result.drifted]
    parts.append(f"{len(drifting_nodes)}/{len(nodes)} nodes drifting")
    if not fleet.result.drifted and not sites and not drifting_nodes:
        parts.append("no drift")
    try:
        performance = stored.performance_of().result
    except KeyError:
        performance = None
    if performance is not None and performance.accuracy is not None:
        coverage = performance.label_coverage or 0.0
        parts.append(f"accuracy {performance.accuracy:.3f} on {coverage:.0%} labelled")
    issues = stored.quality_issues()
    if issues:
        parts.append(f"quality issues: {', '.join(issues)}")
    return "  " + "; ".join(parts)


def _last_report(engine: Engine, data_dir: Path, start: datetime) -> Path | None:
    from monitor.jobs.reports import write_report

    out = Path(data_dir) / "demo-report.html"
    try:
        with engine.connect() as conn:
            return write_report(conn, "pump-failure", start.isoformat(), str(out)).path
    except Exception as exc:  # the report is a bonus: the demo's story is already told
        say(f"(no report: {exc})")
        return None


def say(message: str) -> None:
    print(message, flush=True)
