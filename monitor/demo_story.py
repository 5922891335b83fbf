"""`edge-monitor demo`'s whole story: drift, a grouped alert, a signed webhook, concept drift,
an accuracy alert, retraining, a canary, a rollout and recovered accuracy, narrated as it happens.

The demo's own loop runs every job of the worker on the accelerated clock (analysis and alert
evaluation, webhook delivery, retrain runs, canary judging) instead of the scheduler's
intervals, and watches the database for each milestone of the story: ``MILESTONES``. A run
ends when the story is told or its time is up; the fast mode fails naming every milestone that
did not happen.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.demo import say, window_line

if TYPE_CHECKING:
    from monitor.alerts.receiver import Received
    from monitor.dashboards.server import Dashboard
    from monitor.fleet.scenarios import NodePlan
    from monitor.fleet.simulator import FleetSimulator
    from monitor.jobs.analysis import Worker
    from monitor.storage.results import WindowResults

log = logging.getLogger(__name__)

MODEL = "pump-failure"
#: The story's milestones, in the order they should happen: (key, what happened).
MILESTONES: tuple[tuple[str, str], ...] = (
    ("drift alert", "a grouped alert fired for the nodes of the drifting site"),
    ("dashboard", "the dashboard answered and its Fleet page named the drifting site"),
    ("webhook", "the built-in receiver received and verified a webhook"),
    ("accuracy alert", "the accuracy alert fired"),
    ("retraining", "the reference retrainer produced a candidate version"),
    ("canary", "the candidate passed the gate and went on canary"),
    ("rollout", "the canary was good and the candidate rolled out to every node"),
    ("recovered", "a window on the new version is back above the accuracy rule"),
)
#: Names of what the demo installs.
DRIFT_RULE, ACCURACY_RULE = "demo-node-drift", "demo-accuracy"
ENDPOINT, HOOK = "demo-receiver", "demo-retrain"
#: How often the demo's loop runs the jobs, in seconds.
TICK = 1.0
#: How long after a rollout every node runs the new version (the simulator's nodes poll for
#: their assignment every 2 s).
SWAP = timedelta(seconds=3)


@dataclass(frozen=True)
class StoryConfig:
    """How big and how fast the story is."""

    nodes: int = 12
    sites: int = 4
    window_seconds: float = 15.0
    rate: float = 20.0
    #: Windows before the sensors at one site drift, and windows they drift for.
    steady_windows: int = 2
    drift_windows: int = 2
    #: The run ends after this many windows if the story is not told by then.
    max_windows: int = 30
    #: The accuracy rule's bound (the shipped model falls to about 0.82 under the new failure
    #: mode; a model retrained on it reaches about 0.89).
    accuracy_below: float = 0.86
    #: Windows the canary runs before it is judged.
    canary_windows: int = 2
    #: The share of predictions that get a label (a second later).
    label_coverage: float = 0.8
    #: Fail (exit 1) naming each milestone that did not happen.
    strict: bool = False

    #: Simulated days per window: whole days, so that windows compare whole day/night cycles;
    #: several, so that a span of records the retrainer takes (its candidate's reference) is
    #: close to whole days too, whatever its length.
    days_per_window: int = 4

    @property
    def speed(self) -> float:
        return self.days_per_window * 86_400 / self.window_seconds


#: The fast mode: small enough for CI on two cores, every act still visible.
FAST = StoryConfig(
    window_seconds=6.0, rate=25.0, steady_windows=1, canary_windows=1, max_windows=45, strict=True
)


@dataclass
class Story:
    """What happened so far, told once each."""

    node_names: set[str]
    reached: dict[str, str] = field(default_factory=dict)
    told: set[str] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reach(self, milestone: str, line: str) -> None:
        """Tell ``line``; the first time for ``milestone``, record it reached."""
        with self.lock:
            say(line)
            self.reached.setdefault(milestone, line)

    def tell_once(self, key: str, line: str, milestone: str | None = None) -> None:
        with self.lock:
            if key in self.told:
                return
            self.told.add(key)
        if milestone is None:
            say(line)
        else:
            self.reach(milestone, line)

    def missed(self) -> list[str]:
        return [key for key, _ in MILESTONES if key not in self.reached]


def run_story(settings: Settings, config: StoryConfig, *, own_database: bool) -> int:
    """Tell the story; returns the exit code (1 in strict mode when a milestone was missed)."""
    from monitor.alerts.receiver import Receiver
    from monitor.alerts.signing import new_secret
    from monitor.collector.server import BackgroundCollector
    from monitor.demo_model import paths
    from monitor.fleet.scenarios import scenario
    from monitor.fleet.simulator import FleetSimulator, SimulationConfig
    from monitor.jobs.windows import window_of
    from monitor.simulate import register_local
    from monitor.storage import migrations
    from monitor.storage.engine import make_engine

    url = settings.resolved_database_url
    if own_database:
        _fresh(url)
    say(f"database: {settings.shown_database_url}{' (fresh for this run)' if own_database else ''}")
    migrations.upgrade(url)
    engine = make_engine(url)
    window = timedelta(seconds=config.window_seconds)
    duration = config.max_windows * config.window_seconds
    run, plans = _fleet(config, settings)
    sites = sorted({p.site for p in plans})
    hours = 24.0 * config.days_per_window  # of one window
    acts = (config.steady_windows * hours, (config.steady_windows + config.drift_windows) * hours)
    plan = scenario("story", duration * config.speed / 3600, sites, acts=acts)
    (site,) = plan.affected_sites
    files = paths()
    tokens = register_local(settings, plans, files)
    _production_is_the_shipped_version(engine)
    stored_before = _stored_records(engine)
    secret = new_secret()
    story = Story({p.name for p in plans})
    receiver = Receiver(secret, on_message=lambda m: _on_webhook(story, m)).start()
    # Webhooks may go to loopback only where allowed: the demo allows its own receiver.
    settings = settings.model_copy(
        update={
            "webhook_allowed_networks": [
                *settings.webhook_allowed_networks,
                f"{receiver.url.split('//')[1].split(':')[0]}/32",
            ],
            "retrain_canary_windows": config.canary_windows,
        }
    )
    _install(engine, receiver.url, secret, config)
    at_site = sum(1 for p in plans if p.site == site)
    say(f"model {MODEL} v1 in production; {config.nodes} nodes at {len(sites)} sites ({run}-*)")
    say(
        f"rules: {DRIFT_RULE} (any node drifting, one alert per site, 2 windows in a row), "
        f"{ACCURACY_RULE} (fleet accuracy below {config.accuracy_below:g} with 95% confidence, "
        f"2 of 3 windows; starts the reference retrainer); webhooks to the built-in receiver "
        f"on {receiver.url}"
    )
    worker = _worker(engine, window)
    dashboard = _start_dashboard(settings, url)
    loop = _Loop(engine, settings, worker, story, config, plans, plan.affected_sites)
    loop.dashboard = dashboard
    # The demo tells each window's story; the worker's own line per window would repeat it,
    # and the jobs' progress lines (each delivery, each node's hot swap) would drown it.
    logging.getLogger("monitor.jobs.analysis").setLevel(logging.ERROR)
    for name in ("monitor.jobs", "monitor.retrain", "monitor.runtime", "monitor.alerts", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with BackgroundCollector(settings) as collector:
            say(f"collector on {collector.url} (API docs: {collector.url}/docs)")
            say(
                f"story: {_windows(config.steady_windows)} of {config.window_seconds:g} s "
                f"({config.days_per_window} simulated days each) steady, then the temperature "
                f"and vibration sensors of "
                f"the {at_site} nodes at {site} read high for {_windows(config.drift_windows)}, "
                f"then machines fail from a new cause (seal wear) everywhere"
            )
            simulator = FleetSimulator(
                collector.url,
                tokens,
                plans,
                plan,
                files.model.read_bytes(),
                json.loads(files.card.read_text()),
                SimulationConfig(
                    rate=config.rate,
                    duration=duration,
                    speed=config.speed,
                    label_delay=1.0,
                    label_coverage=config.label_coverage,
                    seed=7,
                    poll_interval=2.0,
                    heartbeat_interval=5.0,
                ),
            )
            # Start on a window boundary so that every window holds whole simulated days (the
            # nodes' runtimes are loaded before: the first window must not miss its first hour).
            boundary = window_of(datetime.now(UTC), window).end
            time.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds()))
            loop.start()
            result = simulator.run(progress=_ending(simulator, story))
            time.sleep(worker.config.grace.total_seconds() + TICK)  # the last window's grace
            loop.stop()
    finally:
        loop.halt()  # interrupted: the threads stop at their next tick
        receiver.close()
        if dashboard is not None:
            dashboard.stop()
    lost = {k: v for k, v in result.dropped.items() if v and k != "sampled_out"}
    # Counted in the database: a node's SDK counters restart with each version it swaps to.
    stored = _stored_records(engine) - stored_before
    delivered = (
        f"{stored} records delivered exactly once"
        if stored == result.predictions
        else f"{stored} records stored"
    )
    say(
        f"{result.predictions} predictions, {delivered}, {result.labels} labels; "
        f"dropped: {lost or 'none'}"
    )
    from monitor.demo import _last_report

    with engine.connect() as conn:
        from monitor.storage import models, results

        last = results.latest_window_start(conn, models.get_model(conn, MODEL).id)
    if last is not None:
        report = _last_report(engine, settings.data_dir, last)
        if report is not None:
            say(f"report of the last window (verdicts, with Evidently's plots): {report}")
    engine.dispose()
    if dashboard is not None:
        say(f"dashboard stopped; to look again: {_dashboard_command(settings, own_database)}")
    return _summary(story, config)


def _start_dashboard(settings: Settings, url: str) -> Dashboard | None:
    """The dashboard on the demo's database, on MONITOR_DASHBOARD_PORT (another free port when
    that one is taken), redrawing itself as fast as the demo's windows close; None, said,
    without Streamlit."""
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:
        say("dashboard: not started (it needs Streamlit: pip install 'edge-monitor[dashboard]')")
        return None
    import os

    from monitor.dashboards import server

    port = settings.dashboard_port
    if not server.port_free(settings.host, port):
        port = server.free_port(settings.host)
    environ = {
        **os.environ,
        "MONITOR_DASHBOARD_REFRESH_SECONDS": "5",
        "MONITOR_DASHBOARD_CACHE_SECONDS": "2",
    }
    dashboard = server.start(url, host=settings.host, port=port, environ=environ)
    try:
        dashboard.wait_ready()
    except RuntimeError as exc:
        say(f"dashboard: not started ({exc})")
        dashboard.stop()
        return None
    say(f"dashboard: {dashboard.url} (fleet health as the story goes, redrawn every 5 s)")
    return dashboard


def _dashboard_command(settings: Settings, own_database: bool) -> str:
    """The command that opens the dashboard on the demo's database again."""
    import shlex

    where = (
        f"--data-dir {shlex.quote(str(settings.data_dir))}"
        if own_database
        else f"--database-url {shlex.quote(settings.shown_database_url)}"
    )
    return f"edge-monitor {where} dashboard"


def _fleet(config: StoryConfig, settings: Settings) -> tuple[str, list[NodePlan]]:
    """The run's name and its nodes: names new to the database, among which the canary's
    share picks as many nodes as it promises (which nodes a share picks is a hash of the name:
    a small fleet could otherwise get one canary node, or none)."""
    from monitor.fleet.scenarios import plan_fleet
    from monitor.storage.registry import canary_bucket

    stamp = f"demo-{datetime.now(UTC):%H%M%S}"
    wanted = round(config.nodes * settings.retrain_canary_share)
    for attempt in range(200):
        run = stamp if attempt == 0 else f"{stamp}{chr(ord('a') + attempt % 26)}{attempt // 26}"
        plans = plan_fleet(config.nodes, sites=config.sites, prefix=run)
        share = settings.retrain_canary_share
        if sum(canary_bucket(MODEL, p.name) < share for p in plans) == wanted:
            return run, plans
    return stamp, plan_fleet(config.nodes, sites=config.sites, prefix=stamp)


def _summary(story: Story, config: StoryConfig) -> int:
    say("milestones:")
    for key, what in MILESTONES:
        say(f"  [{'x' if key in story.reached else ' '}] {key}: {what}")
    missed = story.missed()
    if not missed:
        say("the whole story was told")
        return 0
    say(f"missed: {', '.join(missed)}")
    return 1 if config.strict else 0


def _ending(simulator: FleetSimulator, story: Story) -> Callable[[float, int], None]:
    """A progress callback that ends the simulation once the story is told."""

    def progress(_done: float, _predictions: int) -> None:
        if story.done.is_set():
            simulator.stop()

    return progress


def _stored_records(engine: Engine) -> int:
    from monitor.storage import models
    from monitor.storage.records import count_records

    with engine.connect() as conn:
        return count_records(conn, model_id=models.get_model(conn, MODEL).id)


def _windows(count: int) -> str:
    return f"{count} window{'' if count == 1 else 's'}"


def _fresh(url: str) -> None:
    """Remove the demo's own SQLite file, so every story starts from v1 and no alerts."""
    from monitor.config import sqlite_file

    database = sqlite_file(url)
    if database is None:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)


def _production_is_the_shipped_version(engine: Engine) -> None:
    """In a database a previous story ran in, v1 goes back into production (no canary)."""
    from monitor.storage import models, registry
    from monitor.storage.engine import begin_write

    with begin_write(engine) as conn:
        model = models.get_model(conn, MODEL)
        deployment = registry.deployment(conn, model.id)
        if deployment.canary is not None:
            registry.stop_canary(conn, model.id)
        if deployment.production is None or deployment.production.version != "1":
            registry.promote(conn, model.id, "1")


def _install(engine: Engine, url: str, secret: str, config: StoryConfig) -> None:
    """The demo's endpoint, retrain hook and two rules."""
    from monitor.alerts import rules as r
    from monitor.storage import alert_rules, models, retrains, webhooks
    from monitor.storage.engine import begin_write
    from monitor.storage.types import utcnow

    now = utcnow()
    with begin_write(engine) as conn:
        model = models.get_model(conn, MODEL)
        webhooks.upsert_endpoint(
            conn,
            name=ENDPOINT,
            url=url,
            secret=secret,
            description="the demo's built-in receiver",
            now=now,
        )
        retrains.upsert_hook(
            conn,
            name=HOOK,
            model_id=model.id,
            kind="reference",
            config={},
            timeout_seconds=600,
            cooldown_seconds=0,
            now=now,
        )
        alert_rules.upsert_rule(
            conn,
            r.Rule(
                name=DRIFT_RULE,
                kind=r.SCOPE_DRIFT,
                model=MODEL,
                scope=r.EACH_NODE,
                group_by=r.SITE,
                fire_m=2,
                fire_n=2,
                resolve_m=2,
                resolve_n=2,
                endpoints=(ENDPOINT,),
                source="cli",
            ),
            now=now,
        )
        alert_rules.upsert_rule(
            conn,
            r.Rule(
                name=ACCURACY_RULE,
                kind=r.PERFORMANCE,
                model=MODEL,
                params={"metric": "accuracy", "below": config.accuracy_below},
                scope=r.FLEET,
                fire_m=2,
                fire_n=3,
                resolve_m=2,
                resolve_n=3,
                severity="critical",
                endpoints=(ENDPOINT,),
                hooks=(HOOK,),
                source="cli",
            ),
            now=now,
        )


def _worker(engine: Engine, window: timedelta) -> Worker:
    from monitor.analysis import AnalysisPolicy, DriftPolicy
    from monitor.jobs.analysis import AnalysisConfig, Worker

    return Worker(
        engine,
        AnalysisConfig(
            window=window,
            grace=timedelta(seconds=2),
            lookback=timedelta(minutes=30),
            policy=AnalysisPolicy(drift=DriftPolicy(min_rows=100), min_labels=30),
        ),
    )


def _on_webhook(story: Story, message: Received) -> None:
    story.reach("webhook", message.line())


class _Loop:
    """The demo's worker: runs every job on a thread each tick, then tells what happened."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        worker: Worker,
        story: Story,
        config: StoryConfig,
        plans: list[NodePlan],
        site: frozenset[str],
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.worker = worker
        self.story = story
        self.config = config
        self.plans = plans
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._every, args=(self._jobs,), name="demo-worker", daemon=True
            ),
            # Training takes a while: it must not hold up analysis and the canary's windows.
            threading.Thread(
                target=self._every, args=(self._retrain,), name="demo-retrain", daemon=True
            ),
        ]
        self.site = next(iter(sorted(site)))
        self.promoted_at: datetime | None = None
        self.promoted: str | None = None
        self.recovered_windows = 0
        self.accuracy_resolved = False
        self._runs: dict[int, str] = {}
        self._failures: set[str] = set()
        self.dashboard: Dashboard | None = None
        self._dashboard_checked = False

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def halt(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._jobs()  # what the last tick left

    def _every(self, job: Callable[[], None]) -> None:
        while not self._stop.wait(TICK):
            try:
                job()
            except Exception as exc:  # one failing job must not end the story; the log says why
                if repr(exc) not in self._failures:  # once each, not every tick
                    self._failures.add(repr(exc))
                    log.exception("demo job %s failed", getattr(job, "__name__", job))

    def _jobs(self) -> None:
        from monitor.jobs.alerts import evaluate_nodes
        from monitor.jobs.canary import judge_canaries
        from monitor.jobs.deliveries import deliver_due
        from monitor.jobs.health import HealthRules
        from monitor.storage.types import utcnow

        self.worker.run_due()  # the window's alerts and their outbox rows are written with it
        self.worker.refresh_performance()
        health = HealthRules()
        evaluate_nodes(
            self.engine,
            now=utcnow(),
            offline_after=health.offline_after,
            tick=timedelta(seconds=TICK),
            clock_skew_for=health.clock_skew_for,
        )
        self._tell()  # the windows and alerts first, then what they caused
        deliver_due(self.engine, self.settings)
        judge_canaries(self.engine, self.settings)
        self._tell()

    def _retrain(self) -> None:
        from monitor.jobs.retrain import run_queued

        run_queued(self.engine, self.settings)

    def _tell(self) -> None:
        from monitor.storage import models, results

        with self.engine.connect() as conn:
            model = models.get_model(conn, MODEL)
            for start, _ in results.analysed_windows(conn, model.id):
                if f"window {start.isoformat()}" in self.story.told:
                    continue
                stored = results.window(conn, model.id, start)
                if stored is None or not any(
                    s.scope_kind == "node" and s.scope_key in self.story.node_names
                    for s in stored.drift
                ):
                    continue
                self.story.tell_once(
                    f"window {start.isoformat()}", window_line(stored, self.story.node_names)
                )
                self._recovery(stored)
        self._alerts()
        self._retrains()

    def _alerts(self) -> None:
        from monitor.storage import alerts, models

        with self.engine.connect() as conn:
            model = models.get_model(conn, MODEL)
            found = alerts.list_alerts(conn, model_id=model.id)
            events = [(a, e) for a in reversed(found) for e in alerts.alert_events(conn, a.id)]
        for alert, event in events:
            line, milestone = _alert_line(alert.rule, event.kind, event.payload.get("data", {}))
            if alert.rule == DRIFT_RULE and alert.group_key != f"site:{self.site}":
                milestone = None  # a site that was not meant to drift
            self.story.tell_once(f"event {event.message_id}", line, milestone)
            if milestone == "drift alert":
                self._check_dashboard()
            if alert.rule == ACCURACY_RULE and event.kind == "resolved":
                self.accuracy_resolved = True

    def _check_dashboard(self) -> None:
        """Once, as the site's drift alert fires: the dashboard answers, and its Fleet page
        names the site as drifting. Drawn on this thread, which analyses the windows: no newer
        window (where the site may be back to normal) is stored while the page is read."""
        if self.dashboard is None or self._dashboard_checked:
            return
        self._dashboard_checked = True
        from monitor.dashboards import probe

        try:
            self.dashboard.wait_ready(timeout=10)
            page = probe.read_page(self.settings.resolved_database_url, "fleet")
        except Exception as exc:
            say(f"dashboard: its Fleet page could not be read ({exc})")
            return
        if page.errors:
            say(f"dashboard: its Fleet page shows an error: {page.errors[0]}")
            return
        named = [
            line.strip()
            for line in page.text.splitlines()
            if self.site in line and "drift" in line.lower()
        ]
        if not named:
            say(f"dashboard: its Fleet page does not name {self.site} as drifting")
            return
        self.story.reach(
            "dashboard", f"dashboard: the Fleet page names {self.site} as drifting: {named[0]}"
        )

    def _retrains(self) -> None:
        from monitor.storage import models, retrains

        with self.engine.connect() as conn:
            model = models.get_model(conn, MODEL)
            runs = retrains.list_runs(conn, model_id=model.id)
        for run in reversed(runs):
            if self._runs.get(run.id) == run.status:
                continue
            self._runs[run.id] = run.status
            # A run can pass several statuses between two looks: tell each it went through.
            for status in _PATH.get(run.status, (run.status,)):
                line, milestone = _run_line(replace(run, status=status), len(self.plans))
                if line is not None:
                    self.story.tell_once(f"run {run.id} {status}", line, milestone)
            if run.status == "promoted" and self.promoted is None:
                self.promoted, self.promoted_at = run.version, run.updated_at

    def _recovery(self, stored: WindowResults) -> None:
        """After the rollout, the first window wholly on the new version that is back above the
        accuracy rule's bound recovers the story; the story ends once the accuracy alert has
        resolved too, or two windows later."""
        if self.promoted_at is None or stored.window_start < self.promoted_at + SWAP:
            return
        try:
            performance = stored.performance_of().result
        except KeyError:
            return
        accuracy = performance.accuracy
        if accuracy is None:
            return
        key = f"recovered {stored.window_start.isoformat()}"
        if key in self.story.told:
            return
        self.story.told.add(key)
        if accuracy >= self.config.accuracy_below or self.recovered_windows:
            self.recovered_windows += 1
            if self.recovered_windows == 1:
                self.story.reach(
                    "recovered",
                    f"accuracy recovered: {accuracy:.3f} on v{self.promoted} in window "
                    f"{stored.window_start:%H:%M:%S} (the rule's bound is "
                    f"{self.config.accuracy_below:g})",
                )
        if "recovered" in self.story.reached and (
            self.accuracy_resolved or self.recovered_windows >= 3
        ):
            self.story.done.set()


def _alert_line(rule: str, kind: str, data: Mapping[str, Any]) -> tuple[str, str | None]:
    """The line telling one alert transition, and the milestone it reaches (if any)."""
    state = {"fired": "FIRING", "resolved": "RESOLVED"}.get(kind, kind)
    summary = str(data.get("summary", ""))
    if rule == ACCURACY_RULE:
        details = data.get("details") or {}
        value, bound, interval = data.get("value"), data.get("bound"), details.get("interval")
        if kind == "fired" and value is not None and interval:
            summary = (
                f"fleet accuracy {value:.3f} (95% interval {interval[0]:.3f}-{interval[1]:.3f} "
                f"on {int(details.get('n_labelled') or 0)} labels) is below {bound:g}"
            )
        elif kind == "resolved":
            summary = f"fleet accuracy is back above {bound:g}" if bound is not None else summary
        return f"accuracy alert {state}: {summary}", "accuracy alert" if kind == "fired" else None
    return f"alert {state}: {summary}", "drift alert" if kind == "fired" else None


#: The statuses a retrain run went through to reach one (those told on the way).
_PATH: dict[str, tuple[str, ...]] = {
    "produced": ("queued", "produced"),
    "gated": ("queued", "produced", "gated"),
    "canary": ("queued", "produced", "canary"),
    "promoted": ("queued", "produced", "canary", "promoted"),
    "rolled_back": ("queued", "produced", "canary", "rolled_back"),
    "failed": ("queued", "failed"),
    "timed_out": ("queued", "timed_out"),
}


def _run_line(run: Any, fleet: int) -> tuple[str | None, str | None]:
    """The line telling a retrain run's new status, and the milestone it reaches (if any)."""
    details = run.details or {}
    version = f"v{run.version}" if run.version else "the candidate"
    if run.status == "queued":
        return f"retraining: run {run.id} of hook {run.hook} queued by the {run.trigger}", None
    if run.status == "running":
        return None, None
    if run.status == "produced":
        trained = details.get("trained") or {}
        figures = ""
        if trained.get("candidate_accuracy") is not None:
            figures = (
                f" (accuracy {trained['candidate_accuracy']:.2f} vs "
                f"{trained.get('production_accuracy') or 0:.2f} on the "
                f"{trained.get('held_out_rows')} newest labelled records it held out)"
            )
        return f"retraining: the reference retrainer produced {version}{figures}", "retraining"
    gate = details.get("gate") or {}
    figures = (
        f"accuracy {gate['candidate_accuracy']:.2f} vs {gate['production_accuracy']:.2f}"
        if gate.get("candidate_accuracy") is not None
        and gate.get("production_accuracy") is not None
        else gate.get("reason", "")
    )
    if run.status == "canary":
        nodes = len((details.get("canary") or {}).get("nodes") or [])
        return (
            f"candidate {version} passed the gate ({figures}); canary on {nodes} of {fleet} nodes",
            "canary",
        )
    if run.status == "gated":
        return f"candidate {version} stopped by the gate ({figures})", None
    judgement = (details.get("canary") or {}).get("judgement") or {}
    reason = judgement.get("reason", "")
    if run.status == "promoted":
        return f"canary good: {version} rolled out to every node ({reason})", "rollout"
    if run.status == "rolled_back":
        return f"canary regressed: {version} rolled back ({reason})", None
    last = (run.output or "").strip().splitlines()[-1:] or [""]
    return f"retraining {run.status}: {last[0]}", None
