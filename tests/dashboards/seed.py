"""A database that holds everything the dashboard shows, built the way a fleet fills one.

``build(url)`` registers the demo model (version 1 in production with its reference, version 2
in a 25% canary), 12 nodes at 3 sites, and eight 15-minute windows of readings ending just
before real now. Records come from the fleet generator through the real ONNX model and are
stored with the collector's storage functions; labels arrive for most of them; the real
worker analyses every window and judges the alert rules (applied first, as a user applies a
rules file) inside its transaction; the health job judges the nodes. Then webhook messages
are put in several delivery statuses and two retrain runs are recorded.

What it holds, so that page tests can rely on it (``tests/dashboards/test_seed.py`` checks):

* ``drifting_site``: temperature and vibration sensors read high from the sixth window on,
  so its site scope is drifted in the last 3 windows and in no window before.
* ``quality_site``: half its vibration readings are missing in window ``quality_window``
  only; the rule "missing vibration" fires there and resolves in the next window.
* Alerts: "site drift" firing for ``drifting_site``; "missing vibration" resolved; "node
  offline" firing for ``offline_node``; "clock skew" firing for ``skewed_node``.
* Nodes: ``offline_node`` stopped after window 3 (records and heartbeats), ``silent_node``
  sends records but never a heartbeat, ``skewed_node`` sent a record time two days ahead,
  ``lossy_node`` lost records to a full queue and has runtime errors; every other node sent
  its last heartbeat as the seed finished (online while MONITOR_HEALTH_OFFLINE_AFTER_SECONDS
  is at least the session's length: the fixtures set it to ``OFFLINE_AFTER``).
* Heartbeats: one per node per window (received a minute before the window's end) with
  cumulative SDK counters, spool backlog and runtime latency percentiles; the canary's nodes
  report version 2 from window ``CANARY_FROM`` on.
* Webhook messages: delivered, failed, pending (a retry after an error) and delivering.
* Retrain runs of the hook "pump-retrain": one failed, one that produced version 2, now in
  its canary.
* Estimated performance and multivariate drift (stored over the worker's own rows, so that
  pages can rely on them): none in the windows before ``ESTIMATED_FROM`` (analysed before these
  kinds existed); from there on every scope's estimate follows its realised figures within a
  band and is trusted ("labels agree"), but for ``drifting_site`` (its site, groups and nodes)
  from window ``UNTRUSTED_FROM`` on, whose estimate stays high while its labels say otherwise:
  not trusted, evidence ``calibration``, a reason naming the site. Multivariate drift is
  flagged at the fleet and at ``drifting_site`` (site, groups, nodes) from window ``DRIFT_FROM``
  on, and nowhere else.
"""

from __future__ import annotations

import json
import math
import tempfile
import textwrap
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from sqlalchemy import Engine, func, select, update

from monitor.commands.alerts import apply_file
from monitor.demo_model import MODEL_NAME, paths
from monitor.fleet.machines import MachineFleetGenerator, SensorDrift, SensorFault
from monitor.fleet.scenarios import CLIMATE, NodePlan, plan_fleet
from monitor.jobs.alerts import evaluate_nodes
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.health import HealthRules, check_fleet
from monitor.jobs.windows import window_of
from monitor.schema import (
    CALIBRATION,
    DRIFT,
    ESTIMATION,
    FLEET,
    FLEET_KEY,
    GROUP,
    LABELS_AGREE,
    MULTIVARIATE,
    NO_CONTRARY_EVIDENCE,
    NO_PROBABILITIES,
    NODE,
    OK,
    PERFORMANCE,
    SITE,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    ResultTable,
)
from monitor.storage import migrations, models, nodes, registry, results, retrains, webhooks
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.heartbeats import record_heartbeat
from monitor.storage.labels import upsert_labels
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.results import KindResults, Stored
from monitor.storage.tables import batches, node_heartbeats
from monitor.storage.tables import nodes as nodes_table
from monitor.storage.types import utcnow
from tests.jobs.fleetdata import register_demo_model, runtime

WINDOW = timedelta(minutes=15)
WINDOWS = 8
NODES = 12
SITES = 3
PER_NODE = 250
#: The fleet generator's seed: readings are the same on every run and backend (chosen so that
#: no steady site shows a chance verdict, which FDR control allows now and then).
GENERATOR_SEED = 3
#: Windows (0-based) in which the drifting site's sensors read high: the last three.
DRIFT_FROM = WINDOWS - 3
QUALITY_WINDOW = 2
#: The offline node's last window (records and heartbeats).
OFFLINE_LAST = 3
#: From this window on, the canary's nodes report running version 2.
CANARY_FROM = 6
CANARY_SHARE = 0.25
#: Every record is labelled but each LABEL_EVERY-th (4 in 5 labelled).
LABEL_EVERY = 5
#: The offline threshold the dashboard tests run with (MONITOR_HEALTH_OFFLINE_AFTER_SECONDS):
#: long enough that nodes heard as the seed finished stay online for a whole test session,
#: short enough that the offline node (silent since window 3, over an hour) is offline.
OFFLINE_AFTER = timedelta(minutes=30)
#: What the health job and node rules judge with while seeding (the setting's default).
SEED_OFFLINE_AFTER = timedelta(seconds=120)
#: The skewed node's clock: two days ahead.
SKEW_SECONDS = 2 * 86_400.0
#: One simulated day per window, as the simulator maps time (see tests/jobs/fleetdata.py).
SIM_HOURS_PER_WINDOW = 24.0
#: Windows (0-based) before this one have no estimation or multivariate rows (analysed before
#: these kinds existed).
ESTIMATED_FROM = 2
#: From this window on, the drifting site's estimates are not trusted (its calibration broke).
UNTRUSTED_FROM = WINDOWS - 2
#: How far the untrusted estimates stay above what the labels realised.
UNTRUSTED_OPTIMISM = 0.15
#: The reference's mean reconstruction error, and the spread of a one-row mean around it.
REFERENCE_ERROR = 1.2
ERROR_SPREAD = 0.9
ENDPOINT_URL = "http://127.0.0.1:9/edge-monitor"
HOOK = "pump-retrain"

RULES = textwrap.dedent(
    f"""\
    [[endpoint]]
    name = "ops-receiver"
    url = "{ENDPOINT_URL}"
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    description = "the on-call team's receiver"

    [[hook]]
    name = "{HOOK}"
    model = "{MODEL_NAME}"
    kind = "reference"
    timeout = "1h"
    cooldown = "0"

    [[rule]]
    name = "site drift"
    model = "{MODEL_NAME}"
    kind = "scope_drift"
    scope = "site"
    fire = "2 of 3"
    resolve = "3 of 3"
    severity = "warning"

    [[rule]]
    name = "missing vibration"
    model = "{MODEL_NAME}"
    kind = "quality"
    scope = "site"
    params = {{ figure = "missing_share", above = 0.1, feature = "vibration_mm_s" }}
    severity = "info"

    [[rule]]
    name = "accuracy below 0.5"
    model = "{MODEL_NAME}"
    kind = "performance"
    params = {{ metric = "accuracy", below = 0.5 }}
    severity = "critical"
    hooks = ["{HOOK}"]

    [[rule]]
    name = "node offline"
    kind = "node_offline"
    scope = "each_node"
    group_by = "site"
    params = {{ for_seconds = 900 }}

    [[rule]]
    name = "clock skew"
    kind = "clock_skew"
    scope = "each_node"
    severity = "info"
    """
)


@dataclass(frozen=True)
class Seeded:
    """A seeded database and what is in it (see the module's docstring)."""

    url: str
    engine: Engine
    model: str
    model_id: int
    nodes: tuple[str, ...]
    sites: tuple[str, ...]
    drifting_site: str
    offline_node: str
    silent_node: str
    skewed_node: str
    #: Lost records to a full queue and has runtime errors (degraded).
    lossy_node: str
    #: Nodes in version 2's canary (they report running it from window CANARY_FROM on).
    canary_nodes: tuple[str, ...]
    quality_site: str
    quality_window: datetime
    #: The analysed windows' starts, oldest first (each WINDOW long).
    window_starts: tuple[datetime, ...]
    #: Windows with estimation and multivariate rows (from ESTIMATED_FROM), and those in which
    #: the drifting site's estimates are not trusted (from UNTRUSTED_FROM).
    estimated_windows: tuple[datetime, ...]
    untrusted_windows: tuple[datetime, ...]
    #: Real time when the seed was built (the worker's and the health job's now).
    now: datetime
    #: The dashboard tests' MONITOR_HEALTH_OFFLINE_AFTER_SECONDS.
    offline_after: timedelta = OFFLINE_AFTER


class _Plan:
    """The seed's knobs per node and window: drift at one site, a burst of missing readings at
    another, the climate of the model's training site everywhere."""

    def __init__(self, drifting_site: str, quality_site: str) -> None:
        self.drifting_site = drifting_site
        self.quality_site = quality_site

    def knobs(self, node: NodePlan) -> dict[str, Any]:
        knobs: dict[str, Any] = {"site": CLIMATE}
        if node.site == self.drifting_site:
            onset = DRIFT_FROM * SIM_HOURS_PER_WINDOW
            knobs["sensor_drift"] = {
                "temperature_c": SensorDrift(offset=12.0, start_hour=onset),
                "vibration_mm_s": SensorDrift(gain=0.6, start_hour=onset),
            }
        if node.site == self.quality_site:
            knobs["faults"] = [
                SensorFault(
                    "vibration_mm_s",
                    "missing",
                    start_hour=QUALITY_WINDOW * SIM_HOURS_PER_WINDOW,
                    hours=SIM_HOURS_PER_WINDOW,
                    rate=0.5,
                )
            ]
        return knobs


def migrated(url: str) -> Engine:
    """An engine on ``url`` migrated to the schema head."""
    migrations.upgrade(url)
    return make_engine(url)


def build_empty(url: str) -> None:
    """A database at the schema head with nothing in it (what `edge-monitor db upgrade` left)."""
    migrated(url).dispose()


def build_no_reference(url: str) -> None:
    """The demo model registered by name only: no version, no reference data."""
    engine = migrated(url)
    with begin_write(engine) as conn:
        models.add_model(conn, MODEL_NAME)
    engine.dispose()


def build_no_window(url: str) -> None:
    """The demo model with its reference, three nodes and records in the window open now:
    nothing analysed yet."""
    engine = migrated(url)
    model_id = register_demo_model(engine)
    plans = plan_fleet(3, sites=1)
    with begin_write(engine) as conn:
        for plan in plans:
            node, _ = nodes.add_node(conn, plan.name, group_name=plan.group, site=plan.site)
            nodes.grant_model(conn, node.id, model_id)
    now = utcnow()
    open_window = window_of(now, WINDOW)
    _store_window(engine, model_id, plans, None, open_window.start, now, window_index=0)
    engine.dispose()


#: The node of ``store_unestimated``'s database.
UNESTIMATED_NODE = "edge-1"


def store_unestimated(
    engine: Engine, *, status: str | None = NO_PROBABILITIES, windows: int = 2
) -> list[datetime]:
    """The demo model, one node (UNESTIMATED_NODE at site "north") and ``windows`` analysed
    windows ending before now, with drift and realised accuracy for the fleet and the node but
    no estimate: the fleet's estimation row alone saying why (``status``, as the worker stores
    a model it cannot estimate), or no estimation row at all (``status`` None: windows analysed
    before that kind existed); and no multivariate rows (the same). Returns their starts."""
    model_id = register_demo_model(engine)
    last_end = window_of(utcnow(), WINDOW).start
    starts = [last_end - (windows - i) * WINDOW for i in range(windows)]
    scopes = [(FLEET, FLEET_KEY), (NODE, UNESTIMATED_NODE)]
    with begin_write(engine) as conn:
        node, _ = nodes.add_node(conn, UNESTIMATED_NODE, site="north")
        nodes.grant_model(conn, node.id, model_id)
        version_id = models.version_id(conn, model_id, "1")
        for start in starts:
            drift = [DriftScope(k, key, OK, 100, 4, 0, 0.0, False, False, 0.0) for k, key in scopes]
            performance = [
                PerformanceScope(
                    **_nothing(PerformanceScope)
                    | {"scope_kind": k, "scope_key": key, "status": OK, "task": "classification"}
                    | {"n_rows": 100, "n_labelled": 50, "label_coverage": 0.5, "accuracy": 0.9}
                )
                for k, key in scopes
            ]
            estimates = [
                EstimationScope(
                    **_nothing(EstimationScope)
                    | {"scope_kind": FLEET, "scope_key": FLEET_KEY, "status": status}
                    | {"task": "classification", "n_rows": 100, "n_scored": 0, "n_labelled": 50}
                )
            ]
            results.save_window(
                conn,
                model_id,
                start,
                start + WINDOW,
                {
                    DRIFT: KindResults(ResultTable.from_rows(DriftScope, drift)),
                    PERFORMANCE: KindResults(ResultTable.from_rows(PerformanceScope, performance)),
                    ESTIMATION: KindResults(
                        ResultTable.from_rows(EstimationScope, estimates if status else [])
                    ),
                },
                model_version_id=version_id,
                n_reference=1000,
            )
    return starts


def _nothing(row_type: type) -> dict[str, Any]:
    """Every field of a result row None (the caller sets those it knows)."""
    return {f.name: None for f in fields(row_type)}


def build(url: str, *, now: datetime | None = None) -> Seeded:
    """Seed the database at ``url`` (migrated here) and describe what it holds."""
    now = now or utcnow()
    engine = migrated(url)
    config = AnalysisConfig(window=WINDOW)
    last_end = window_of(now - config.grace, WINDOW).start
    starts = tuple(last_end - (WINDOWS - i) * WINDOW for i in range(WINDOWS))

    plans = plan_fleet(NODES, sites=SITES)
    sites = tuple(dict.fromkeys(plan.site for plan in plans))
    drifting_site, quality_site = sites[1], sites[2]
    by_site = {site: [p.name for p in plans if p.site == site] for site in sites}
    offline_node = by_site[sites[0]][0]
    lossy_node = by_site[sites[0]][1]
    silent_node = by_site[quality_site][0]
    skewed_node = by_site[quality_site][1]
    canary_nodes = tuple(
        p.name for p in plans if registry.canary_bucket(MODEL_NAME, p.name) < CANARY_SHARE
    )

    model_id = register_demo_model(engine)
    with begin_write(engine) as conn:
        for plan in plans:
            node, _ = nodes.add_node(conn, plan.name, group_name=plan.group, site=plan.site)
            nodes.grant_model(conn, node.id, model_id)
        files = paths()
        registry.register_version(
            conn,
            model_id,
            "2",
            artifact=files.model.read_bytes(),
            card=json.loads(files.card.read_text()),
            reference=files.reference.read_bytes(),
            reference_rows=pq.ParquetFile(files.reference).metadata.num_rows,
        )
        registry.start_canary(conn, model_id, "2", CANARY_SHARE)
        versions = {v.version: v.id for v in registry.versions(conn, model_id)}
    # Before any window is analysed: the worker judges rules as it stores results.
    _apply_rules(engine, now)

    seed_plan = _Plan(drifting_site, quality_site)
    request_ids: list[tuple[str, str]] = []
    for index, start in enumerate(starts):
        sending = [p for p in plans if p.name != offline_node or index <= OFFLINE_LAST]
        request_ids += _store_window(
            engine, model_id, sending, seed_plan, start, start + WINDOW, window_index=index
        )
        _heartbeats(
            engine,
            [p.name for p in sending if p.name != silent_node],
            index,
            start + WINDOW - timedelta(minutes=1),
            versions,
            canary_nodes,
            lossy_node,
        )
    with begin_write(engine) as conn:
        upsert_labels(
            conn,
            model_id=model_id,
            node_id=None,
            rows=[
                {"request_id": request_id, "label": label}
                for i, (request_id, label) in enumerate(request_ids)
                if i % LABEL_EVERY
            ],
        )

    analysed = Worker(engine, config).run_due(now=now)
    if analysed != WINDOWS:
        raise AssertionError(f"the worker analysed {analysed} windows, not {WINDOWS}")
    _estimates(engine, model_id, starts, drifting_site)

    _settle_nodes(
        engine,
        plans,
        versions,
        canary_nodes,
        lossy_node,
        now=now,
        starts=starts,
        offline_node=offline_node,
        silent_node=silent_node,
        skewed_node=skewed_node,
    )
    with begin_write(engine) as conn:
        check_fleet(conn, HealthRules(offline_after=SEED_OFFLINE_AFTER), now=now)
    evaluate_nodes(engine, now=now, offline_after=SEED_OFFLINE_AFTER)
    _deliveries(engine)
    _retrains(engine, now)
    return Seeded(
        url=url,
        engine=engine,
        model=MODEL_NAME,
        model_id=model_id,
        nodes=tuple(p.name for p in plans),
        sites=sites,
        drifting_site=drifting_site,
        offline_node=offline_node,
        silent_node=silent_node,
        skewed_node=skewed_node,
        lossy_node=lossy_node,
        canary_nodes=canary_nodes,
        quality_site=quality_site,
        quality_window=starts[QUALITY_WINDOW],
        window_starts=starts,
        estimated_windows=starts[ESTIMATED_FROM:],
        untrusted_windows=starts[UNTRUSTED_FROM:],
        now=now,
    )


def _estimates(
    engine: Engine, model_id: int, starts: tuple[datetime, ...], drifting_site: str
) -> None:
    """Estimation and multivariate rows for every scope the worker judged, stored as the
    worker stores its kinds (see the module's docstring for what they say)."""
    with begin_write(engine) as conn:
        site_of = {n.name: n.site for n in nodes.list_nodes(conn)}
        for index, start in enumerate(starts):
            stored = results.window(conn, model_id, start)
            if stored is None:
                raise AssertionError(f"the worker stored nothing for the window at {start}")
            estimates: list[EstimationScope] = []
            multivariate: list[MultivariateScope] = []
            if index >= ESTIMATED_FROM:
                for drift in stored.drift:
                    kind, key = drift.scope_kind, drift.scope_key
                    at_site = (
                        key == drifting_site
                        if kind == SITE
                        else key.startswith(f"{drifting_site}/")
                        if kind == GROUP
                        else site_of.get(key) == drifting_site
                        if kind == NODE
                        else False
                    )
                    realised = stored.performance_of(kind, key)
                    untrusted = at_site and index >= UNTRUSTED_FROM
                    estimates.append(_estimate(realised, untrusted))
                    flagged = index >= DRIFT_FROM and (at_site or kind == FLEET)
                    multivariate.append(
                        _multivariate(index, drift.result.n_rows, kind, key, flagged)
                    )
            first = stored.drift_of()
            results.save_window(
                conn,
                model_id,
                start,
                first.window_end,
                {
                    ESTIMATION: KindResults(ResultTable.from_rows(EstimationScope, estimates)),
                    MULTIVARIATE: KindResults(
                        ResultTable.from_rows(MultivariateScope, multivariate)
                    ),
                },
                model_version_id=first.model_version_id,
                n_reference=first.n_reference,
            )


def _estimate(realised: Stored[PerformanceScope], untrusted: bool) -> EstimationScope:
    """A scope's estimate: its realised figures nudged (or, untrusted, well above them), each
    with a band of three sampling errors; its trust verdict and reason."""
    p = realised.result
    n = p.n_rows
    where = p.scope_kind if p.scope_kind == FLEET else f"{p.scope_kind} {p.scope_key}"
    shift = UNTRUSTED_OPTIMISM if untrusted else 0.01
    figures: dict[str, float | None] = {}
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        value = getattr(p, metric)
        figure = min(0.99, (0.9 if value is None else value) + shift)
        error = 3 * math.sqrt(figure * (1 - figure) / max(n, 1))
        figures |= {
            metric: figure,
            f"{metric}_lower": max(0.0, figure - error),
            f"{metric}_upper": min(1.0, figure + error),
        }
    accuracy, lower, upper = (figures[k] for k in ("accuracy", "accuracy_lower", "accuracy_upper"))
    assert accuracy is not None and lower is not None and upper is not None
    if untrusted:
        evidence = CALIBRATION
        reason = (
            f"not trusted: calibration broke at {where}: on {p.n_labelled} labelled records the "
            f"model was right {p.accuracy or 0:.0%} of the time where its calibrated confidence "
            f"promised {accuracy:.0%} (band {lower:.2f}–{upper:.2f})"  # noqa: RUF001
        )
    elif p.n_labelled and p.accuracy is not None:
        evidence = LABELS_AGREE
        reason = (
            f"labels agree: {p.accuracy:.2f} realised on {p.n_labelled} labelled records, "
            f"{accuracy:.2f} promised ({lower:.2f}–{upper:.2f})"  # noqa: RUF001
        )
    else:
        evidence, reason = NO_CONTRARY_EVIDENCE, "no labelled records yet to check it"
    return EstimationScope(
        scope_kind=p.scope_kind,
        scope_key=p.scope_key,
        status=OK,
        task=p.task,
        n_rows=n,
        n_scored=n,
        **figures,
        sampling_error=math.sqrt(accuracy * (1 - accuracy) / max(n, 1)),
        shift_allowance=0.0,
        n_labelled=p.n_labelled,
        realised_accuracy=p.accuracy,
        expected_accuracy=accuracy,
        calibration_error=(accuracy - p.accuracy) if p.accuracy is not None else None,
        trusted=not untrusted,
        trust_evidence=evidence,
        trust_reason=reason,
    )


def _multivariate(index: int, n_rows: int, kind: str, key: str, drifted: bool) -> MultivariateScope:
    """A scope's reconstruction error: near the reference's within its spread, or six spreads
    above it where the seed flags multivariate drift."""
    spread = ERROR_SPREAD / math.sqrt(max(n_rows, 1))
    # A small wobble, the same on every run: a steady scope is not a flat line.
    wobble = (sum(map(ord, f"{kind}:{key}:{index}")) % 7 - 3) / 4
    error = REFERENCE_ERROR + (6.0 if drifted else wobble) * spread
    z = (error - REFERENCE_ERROR) / spread
    p_value = float(math.erfc(z / math.sqrt(2)) / 2)
    lower, upper = REFERENCE_ERROR - 3 * spread, REFERENCE_ERROR + 3 * spread
    return MultivariateScope(
        scope_kind=kind,
        scope_key=key,
        status=OK,
        n_rows=n_rows,
        method="pca-reconstruction",
        n_components=3,
        reconstruction_error=error,
        reference_error=REFERENCE_ERROR,
        sampling_error=spread,
        lower_threshold=lower,
        upper_threshold=upper,
        p_value=p_value,
        adjusted_p_value=min(1.0, p_value * 3),
        drifted=drifted,
        nannyml_drifted=bool(np.logical_or(error > upper, error < lower)),
    )


def _apply_rules(engine: Engine, now: datetime) -> None:
    """Apply RULES as a user applies a rules file (the endpoint's loopback address allowed)."""
    with tempfile.TemporaryDirectory(prefix="seed-rules-") as scratch:
        path = Path(scratch) / "alerts.toml"
        path.write_text(RULES)
        apply_file(engine, path, now=now, allowed_networks=("127.0.0.1/32",))


def _store_window(
    engine: Engine,
    model_id: int,
    plans: list[NodePlan],
    plan: _Plan | None,
    start: datetime,
    end: datetime,
    *,
    window_index: int,
) -> list[tuple[str, str]]:
    """PER_NODE readings per node over ``[start, end)``, one batch per node received seconds
    after its newest record (a live fleet, not a backlog); returns (request id, true label)."""
    model = runtime()
    truth_of: list[tuple[str, str]] = []
    seconds = (end - start).total_seconds()
    hour = window_index * SIM_HOURS_PER_WINDOW
    with begin_write(engine) as conn:
        version_id = models.version_id(conn, model_id, "1")
        for node_plan in plans:
            node = nodes.get_node(conn, node_plan.name)
            generator = MachineFleetGenerator(GENERATOR_SEED).child(
                f"{node_plan.name}@{window_index}"
            )
            knobs = plan.knobs(node_plan) if plan else {"site": CLIMATE}
            readings = generator.readings(
                PER_NODE, start_hour=hour, hours=SIM_HOURS_PER_WINDOW, **knobs
            )
            rows = readings.rows()
            predictions = model.predict_batch(rows)
            truth = readings.labels()
            records: list[dict[str, Any]] = []
            for i, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
                uid = uuid.uuid4().hex
                offset = (readings.t_hours[i] - hour) / SIM_HOURS_PER_WINDOW * seconds
                records.append(
                    {
                        "id": uid,
                        "request_id": uid,
                        "ts": (start + timedelta(seconds=float(offset))).timestamp(),
                        "features": row,
                        "prediction": prediction.label,
                        "probabilities": prediction.probabilities,
                        "latency_ms": prediction.latency_ms,
                    }
                )
                truth_of.append((uid, truth[i]))
            stored = insert_batch(
                conn,
                node_id=node.id,
                model_id=model_id,
                model_version_id=version_id,
                batch_uid=None,
                batch=prepare_batch(records),
            )
            newest = max(r["ts"] for r in records)
            conn.execute(
                update(batches)
                .where(batches.c.id == stored.batch_id)
                .values(received_at=datetime.fromtimestamp(newest, UTC) + timedelta(seconds=5))
            )
    return truth_of


def _heartbeats(
    engine: Engine,
    names: list[str],
    index: int,
    at: datetime,
    versions: dict[str, int],
    canary_nodes: tuple[str, ...],
    lossy_node: str,
) -> None:
    """One heartbeat per node, received at ``at``."""
    with begin_write(engine) as conn:
        for name in names:
            node = nodes.get_node(conn, name)
            version = "2" if name in canary_nodes and index >= CANARY_FROM else "1"
            sdk, runtime_telemetry = _telemetry(name, index, version, lossy=name == lossy_node)
            record_heartbeat(
                conn,
                node_id=node.id,
                ts=at,
                model_version_id=versions[version],
                sdk=sdk,
                runtime=runtime_telemetry,
            )
            newest = select(func.max(node_heartbeats.c.id)).where(
                node_heartbeats.c.node_id == node.id
            )
            conn.execute(
                update(node_heartbeats)
                .where(node_heartbeats.c.id == newest.scalar_subquery())
                .values(received_at=at, ts=at)
            )


def _telemetry(
    name: str, index: int, version: str, *, lossy: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A heartbeat's SDK counters (totals since start) and runtime telemetry after ``index + 1``
    windows; the numbers differ by node so that tables and charts are not flat."""
    number = int(name.rsplit("-", 1)[1])
    logged = (index + 1) * (PER_NODE + 10 * number)
    queue_full = (index + 1) * 40 if lossy else 0
    spool = (number * 37 + index * 11) % 90
    errors = index * 2 if lossy else 0
    p95 = 4.0 + number * 0.5 + index * 0.25
    sdk = {
        "logged": logged,
        "enqueued": logged - queue_full,
        "delivered": logged - queue_full - spool,
        "dropped": {"sampled_out": 0, "queue_full": queue_full},
        "queue_depth": index % 3,
        "spool_records": spool,
        "spool_bytes": spool * 200,
        "internal_errors": 0,
    }
    runtime_telemetry = {
        "model": MODEL_NAME,
        "model_version": version,
        "calls": logged,
        "rows": logged,
        "errors_total": errors,
        "errors": {"invalid_input": errors} if errors else {},
        "latency_ms": {
            "window": min(logged, 1000),
            "p50": round(p95 / 2, 4),
            "p95": round(p95, 4),
            "p99": round(p95 * 1.4, 4),
            "max": round(p95 * 2, 4),
        },
    }
    return sdk, runtime_telemetry


def _settle_nodes(
    engine: Engine,
    plans: list[NodePlan],
    versions: dict[str, int],
    canary_nodes: tuple[str, ...],
    lossy_node: str,
    *,
    now: datetime,
    starts: tuple[datetime, ...],
    offline_node: str,
    silent_node: str,
    skewed_node: str,
) -> None:
    """The nodes as the seed ends: the live ones heard now, the offline one last heard in
    window OFFLINE_LAST, the silent one seen (records) but never heard, the skewed one with a
    record time two days ahead."""
    live = [p.name for p in plans if p.name not in (offline_node, silent_node)]
    _heartbeats(engine, live, WINDOWS - 1, now, versions, canary_nodes, lossy_node)
    last_heard = starts[OFFLINE_LAST] + WINDOW - timedelta(minutes=1)
    with begin_write(engine) as conn:
        # The offline node's own heartbeats were recorded "now" by touch_node: put its last
        # sighting where its last heartbeat and batch were.
        conn.execute(
            update(nodes_table)
            .where(nodes_table.c.name == offline_node)
            .values(last_heartbeat_at=last_heard, last_seen_at=last_heard)
        )
        nodes.touch_node(conn, nodes.get_node(conn, silent_node).id)
        nodes.touch_node(conn, nodes.get_node(conn, skewed_node).id, clock_skew=SKEW_SECONDS)


def _deliveries(engine: Engine) -> None:
    """The outbox in several statuses: the oldest message delivered, the next failed, the next
    waiting for a retry after an error, the next being delivered; the rest pending."""
    owner = "seed"
    # The worker queued its messages on its own clock, a moment after the seed's now.
    now = utcnow()
    with begin_write(engine) as conn:
        claimed = webhooks.claim_due(
            conn, owner=owner, now=now, lease=timedelta(minutes=5), limit=4
        )
        if len(claimed) < 4:
            raise AssertionError(
                f"the seed's alerts queued {len(claimed)} webhook messages, not 4+"
            )
        outcomes = [
            (200, None),
            (None, "connection refused"),
            (503, "HTTP 503 Service Unavailable"),
        ]
        for claim, (code, error) in zip(claimed, outcomes, strict=False):
            row = claim.message.id
            webhooks.record_attempt(
                conn,
                row,
                attempt=1,
                at=now,
                status_code=code,
                error=error,
                duration_ms=12.5,
            )
        delivered, failed, retried = (c.message.id for c in claimed[:3])
        webhooks.mark_delivered(conn, delivered, owner=owner, now=now)
        webhooks.mark_failed(conn, failed, owner=owner, error="connection refused")
        webhooks.schedule_retry(
            conn,
            retried,
            owner=owner,
            at=now + timedelta(minutes=1),
            error="HTTP 503 Service Unavailable",
        )


def _retrains(engine: Engine, now: datetime) -> None:
    """Two runs of the reference hook: one that failed, then one that produced version 2 (in
    its canary now)."""
    with begin_write(engine) as conn:
        hook = retrains.get_hook(conn, HOOK)
        first = retrains.queue_run(conn, hook, now=now - timedelta(minutes=50))
        retrains.set_run(conn, first.id, status="running", now=now - timedelta(minutes=49))
        retrains.set_run(
            conn,
            first.id,
            status="failed",
            now=now - timedelta(minutes=45),
            output="not enough labelled records: 120 of the 500 needed\n",
        )
        second = retrains.queue_run(conn, hook, now=now - timedelta(minutes=30))
        retrains.set_run(conn, second.id, status="running", now=now - timedelta(minutes=29))
        retrains.set_run(
            conn,
            second.id,
            status="produced",
            now=now - timedelta(minutes=20),
            version="2",
            output="trained on 4,800 labelled records; registered version 2\n",
        )
        retrains.set_run(conn, second.id, status="canary", now=now - timedelta(minutes=10))
