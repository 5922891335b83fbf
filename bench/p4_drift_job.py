"""P4: the drift job end to end on a 100k-row window stored in SQL, against Evidently alone.

A fleet window (25 features: 20 sensor-like numbers and 5 categoricals, a class prediction with
two probabilities; ~100 nodes of Zipf-like sizes at 4 sites in 8 groups; 5 features drift
fleet-wide and 2 more on 2 nodes only) is written to SQLite and PostgreSQL through
``prepare_batch`` + ``insert_batch`` (batches of at most 500 records per node), with true
labels for 10% of the records and a registered, promoted version with a 50,000-row reference.

Subject: ``Worker(engine, AnalysisConfig()).analyse(model, window)``, the shipped default
settings (the worker makes no Evidently snapshot): claim the window's lease, ``Worker._load``
(the window from SQL, the reference, scope keys, labels), ``analyse_window`` (drift + quality
+ performance for the fleet, sites, groups and nodes), ``results.save_window``, complete.
Measured with a fresh Worker (its reference cache cold: the reference is read from the registry
and profiled) and again with the same Worker (cache warm, as a running worker sees every window
after its first). The window's lease is deleted between runs. Each run is split into the phases
load, drift, quality, multivariate, performance, estimation and store (timers around the job's
calls; the peak RSS during each phase from ``VmHWM``, reset at the phase's start through
``/proc/self/clear_refs``).

Baseline, in the same process and interleaved: Evidently's ``Report([DataDriftPreset()])``
(``Dataset.from_pandas`` of both sides + ``run``) on the same rows already in memory: current =
the window's rows, reference = the reference, the 28 columns the job analyses (25 features,
the prediction, 2 probabilities), with their kinds given.

    .venv/bin/python bench/p4_drift_job.py --profile # 100,000 rows (BENCHMARKS.md)
    .venv/bin/python bench/p4_drift_job.py --quick   # 20,000 rows, one database; < 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import logging
import os
import pstats
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

import common
from monitor.jobs.windows import Window
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.labels import upsert_labels
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.tables import job_leases

GOAL = 0.15
BATCH = 500
BATCHES_PER_TRANSACTION = 20
#: The analysed window: 15 minutes (the job's default window), well in the past.
WINDOW = Window(
    datetime(2026, 11, 20, 12, 0, tzinfo=UTC), datetime(2026, 11, 20, 12, 15, tzinfo=UTC)
)
#: Fleet-wide drift: numbers move by this many standard deviations; categoricals mix this
#: share of rows from the reversed level distribution (as in FINDINGS.md's synthetic fleet).
FLEET_SHIFT = {
    "temperature_c": 0.5,
    "pressure_bar": 0.5,
    "current_a": 0.5,
    "machine_type": 0.5,
    "firmware": 0.5,
}
#: Drift on a few nodes only (the "shifted nodes"), invisible in the fleet-wide numbers.
NODE_SHIFT = {"vibration_mm_s": 0.5, "operating_mode": 0.5}
CLASSES = ("ok", "fail")


# --- the fleet: nodes, records, reference -----------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """A window's shape: rows, nodes of Zipf-like sizes, their sites and groups."""

    rows: int
    nodes: int
    sites: int  # 0: nodes have no site
    groups: int
    shifted_every: int  # every this-many-th node (from the 7th) is a shifted node
    reference_rows: int = 50_000
    label_share: float = 0.1
    seed: int = 11
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", [f"bench-node-{i:04d}" for i in range(self.nodes)])

    def sizes(self) -> np.ndarray:
        """Rows per node, Zipf-like (``1 / (rank + 9)**0.8``, as the analysis tests' fleet)."""
        weights = 1.0 / np.arange(10, self.nodes + 10) ** 0.8
        sizes = np.floor(self.rows * weights / weights.sum()).astype(np.int64)
        sizes[0] += self.rows - sizes.sum()
        return sizes

    def shifted(self) -> list[int]:
        return list(range(6, self.nodes, self.shifted_every))

    def site(self, i: int) -> str | None:
        return f"site-{chr(ord('a') + i % self.sites)}" if self.sites else None

    def group(self, i: int) -> str:
        if self.sites:
            per_site = max(self.groups // self.sites, 1)
            return f"{self.site(i)}/line-{(i // self.sites) % per_site + 1}"
        return f"group-{i % self.groups:02d}"


def columns(
    rng: np.random.Generator, n: int, shift: dict[str, float], moved: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Feature columns (``common`` sensor features, values rounded as sensors report them),
    drifted by ``shift`` everywhere and by ``NODE_SHIFT`` on the ``moved`` rows."""
    moved = np.zeros(n, bool) if moved is None else moved
    out: dict[str, np.ndarray] = {}
    for name, mean, sd, decimals in common.NUMERIC_FEATURES:
        delta = np.full(n, shift.get(name, 0.0))
        delta[moved] += NODE_SHIFT.get(name, 0.0)
        values = rng.normal(mean, sd, n) + delta * sd
        if name.startswith("vibration"):
            values = np.abs(values)
        out[name] = np.round(values, decimals)
    for name, levels, p in common.CATEGORICAL_FEATURES:
        mix = np.full(n, shift.get(name, 0.0))
        mix[moved] += NODE_SHIFT.get(name, 0.0)
        base = rng.choice(len(levels), n, p=p)
        flipped = rng.choice(len(levels), n, p=p[::-1])
        codes = np.where(rng.random(n) < mix, flipped, base)
        out[name] = np.asarray(levels, dtype=object)[codes]
    return out


def predictions(rng: np.random.Generator, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the pump-failure model says (as ``common.Synth``), and the true outcome."""
    risk = 1.0 / (
        1.0 + np.exp(-(0.3 * (cols["temperature_c"] - 80.0) + 2.0 * (cols["vibration_mm_s"] - 3.0)))
    )
    risk = np.round(risk, 4)
    return {
        "prediction": np.where(risk > 0.5, "fail", "ok").astype(object),
        "proba_fail": risk,
        "proba_ok": np.round(1.0 - risk, 4),
        "label": np.where(rng.random(risk.size) < risk, "fail", "ok").astype(object),
    }


def reference_frame(fleet: Fleet) -> pd.DataFrame:
    """The version's reference data as a model's training set gives it: one column per feature,
    ``prediction``, ``probability_<class>``, ``label``; no drift."""
    rng = np.random.default_rng(fleet.seed + 1)
    cols = columns(rng, fleet.reference_rows, {})
    out = predictions(rng, cols)
    frame = pd.DataFrame(cols)
    frame["prediction"] = out["prediction"]
    frame["probability_ok"] = out["proba_ok"]
    frame["probability_fail"] = out["proba_fail"]
    frame["label"] = out["label"]
    return frame


def card() -> dict[str, Any]:
    features = [{"name": name, "type": "numeric"} for name, *_ in common.NUMERIC_FEATURES]
    features += [
        {"name": name, "type": "categorical", "categories": list(levels)}
        for name, levels, _ in common.CATEGORICAL_FEATURES
    ]
    return {
        "format": 1,
        "name": common.MODEL,
        "version": common.MODEL_VERSION,
        "task": "classification",
        "classes": list(CLASSES),
        "positive_class": "fail",
        "features": features,
    }


@dataclass
class Stored:
    """Where the window lives in one database."""

    url: str
    model_id: int
    fill_seconds: float
    rows: int


def fill(urls: dict[str, str], fleet: Fleet, window: Window = WINDOW) -> dict[str, Stored]:
    """Register model, version (with its reference), nodes; write the window's records through
    prepare_batch + insert_batch into every database, and labels for ``label_share`` of them."""
    reference = reference_frame(fleet)
    buffer = io.BytesIO()
    reference.to_parquet(buffer, index=False)
    stored: dict[str, Stored] = {}
    ids: dict[str, tuple[int, int, list[int]]] = {}
    for label, url in urls.items():
        engine = make_engine(url)
        with begin_write(engine) as conn:
            model_id = models.add_model(conn, common.MODEL, description="benchmark").id
            registry.register_version(
                conn,
                model_id,
                common.MODEL_VERSION,
                artifact=b"bench: no artifact is run",
                card=card(),
                reference=buffer.getvalue(),
                reference_rows=len(reference),
            )
            registry.promote(conn, model_id, common.MODEL_VERSION)
            version_id = models.version_id(conn, model_id, common.MODEL_VERSION)
            node_ids = [
                nodes.add_node(conn, name, group_name=fleet.group(i), site=fleet.site(i))[0].id
                for i, name in enumerate(fleet.names)
            ]
        engine.dispose()
        ids[label] = (model_id, version_id, node_ids)
        stored[label] = Stored(url, model_id, 0.0, 0)

    rng = np.random.default_rng(fleet.seed)
    sizes = fleet.sizes()
    node = np.repeat(np.arange(fleet.nodes), sizes)
    n = node.size
    span = (window.end - window.start).total_seconds()
    ts = window.start.timestamp() + np.sort(rng.uniform(0.0, span, n))
    rng.shuffle(node)  # nodes take turns over the window; re-sorted by node below
    moved = np.isin(node, fleet.shifted())
    cols = columns(rng, n, FLEET_SHIFT, moved)
    out = predictions(rng, cols)
    latency = np.round(rng.lognormal(np.log(1.5), 0.3, n), 3)
    order = np.lexsort((ts, node))  # by node, then time: each node's batches in order
    labelled = rng.random(n) < fleet.label_share
    engines = {label: make_engine(url) for label, url in urls.items()}
    pending: list[tuple[int, Any]] = []
    labels: list[dict[str, Any]] = []
    names = list(cols)

    def flush() -> None:
        for label, engine in engines.items():
            model_id, version_id, node_ids = ids[label]
            started = time.perf_counter()
            with begin_write(engine) as conn:
                for node_index, batch in pending:
                    insert_batch(
                        conn,
                        node_id=node_ids[node_index],
                        model_id=model_id,
                        model_version_id=version_id,
                        batch_uid=common.new_id(),
                        batch=batch,
                    )
            stored[label].fill_seconds += time.perf_counter() - started
        pending.clear()

    boundaries = np.flatnonzero(np.diff(node[order])) + 1
    for chunk in np.split(order, boundaries):
        node_index = int(node[chunk[0]])
        for start in range(0, chunk.size, BATCH):
            rows = chunk[start : start + BATCH]
            values = [cols[name][rows].tolist() for name in names]
            features = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
            records = []
            for f, p, ok, fail, ms, t, tagged, truth in zip(
                features,
                out["prediction"][rows].tolist(),
                out["proba_ok"][rows].tolist(),
                out["proba_fail"][rows].tolist(),
                latency[rows].tolist(),
                ts[rows].tolist(),
                labelled[rows].tolist(),
                out["label"][rows].tolist(),
                strict=True,
            ):
                uid = common.new_id()
                records.append(
                    {
                        "id": uid,
                        "ts": t,
                        "request_id": uid,
                        "features": f,
                        "prediction": p,
                        "probabilities": {"ok": ok, "fail": fail},
                        "latency_ms": ms,
                    }
                )
                if tagged:
                    labels.append({"request_id": uid, "label": truth, "ts": t + 3600.0})
            pending.append((node_index, prepare_batch(records)))
            if len(pending) >= BATCHES_PER_TRANSACTION:
                flush()
    if pending:
        flush()
    for label, engine in engines.items():
        model_id = ids[label][0]
        started = time.perf_counter()
        for start in range(0, len(labels), 10_000):
            with begin_write(engine) as conn:
                upsert_labels(
                    conn, model_id=model_id, node_id=None, rows=labels[start : start + 10_000]
                )
        stored[label].fill_seconds += time.perf_counter() - started
        stored[label].rows = n
        engine.dispose()
    return stored


# --- the subject -------------------------------------------------------------------------------


def memory_gb(key: str = "VmHWM") -> float:
    """This process's peak (``VmHWM``) or current (``VmRSS``) resident memory, GB."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1e6  # kB -> GB
    return float("nan")


def reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0: ``5`` written to
    ``/proc/self/clear_refs``), so that the next reading is the peak since now; False when the
    kernel does not allow it (then peaks are the process's peak so far)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


class Stages:
    """Time and memory of the job's phases during one ``analyse``, by wrapping the names the
    job calls (a perf_counter pair per call: a handful of calls per window).

    Phases: ``load`` (``Worker._load``: its steps ``load_window``, ``reference``, ``scopes``,
    ``labels`` are timed too), ``drift``, ``quality``, ``multivariate``, ``performance`` and
    ``estimation`` (performance estimated without labels: the analysis functions
    ``analyse_window`` calls) and ``store`` (``results.save_window``); the rest of ``analyse``
    is leases, the commit and logging, and on a cold worker the fits of the reference's
    estimator and reconstruction (done once per reference version, on first use). Memory per
    phase: the highest RSS during it (``VmHWM`` reset at its start; an enclosing phase keeps what
    its steps saw) and the RSS after it.
    """

    PHASES = ("load", "drift", "quality", "multivariate", "performance", "estimation", "store")
    #: Steps of ``load``.
    STEPS = ("load_window", "reference", "scopes", "labels")
    #: The job module's names -> phase or step.
    MODULE_NAMES = {
        "load_window": "load_window",
        "_scopes": "scopes",
        "window_labels": "labels",
        "analyse_drift": "drift",
        "analyse_quality": "quality",
        "analyse_multivariate": "multivariate",
        "analyse_performance": "performance",
        "estimate_performance": "estimation",
    }

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.rss_after: dict[str, float] = {}
        #: The process's peak since it started (folded in before every reset).
        self.process_peak = memory_gb()
        self.exact = True
        self._open: list[str] = []

    def fold(self) -> float:
        """Fold the current ``VmHWM`` into the process's peak and every open phase's."""
        hwm = memory_gb()
        self.process_peak = max(self.process_peak, hwm)
        for key in self._open:
            self.peak[key] = max(self.peak.get(key, 0.0), hwm)
        return self.process_peak

    def _wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.fold()
            self.exact = reset_peak() and self.exact
            self._open.append(key)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.fold()
                self._open.remove(key)
                self.seconds[key] = self.seconds.get(key, 0.0) + elapsed
                self.rss_after[key] = memory_gb("VmRSS")

        return timed

    @contextlib.contextmanager
    def around(self, worker: Any) -> Iterator[Stages]:
        from monitor.jobs import analysis
        from monitor.storage import results

        saved = {name: getattr(analysis, name) for name in self.MODULE_NAMES}
        saved_save = results.save_window
        try:
            for name, key in self.MODULE_NAMES.items():
                setattr(analysis, name, self._wrap(key, saved[name]))
            results.save_window = self._wrap("store", saved_save)
            worker._load = self._wrap("load", worker._load)
            worker._reference = self._wrap("reference", worker._reference)
            yield self
        finally:
            for name, fn in saved.items():
                setattr(analysis, name, fn)
            results.save_window = saved_save
            for name in ("_load", "_reference"):
                with contextlib.suppress(AttributeError):
                    delattr(worker, name)
            self.fold()


def stage_lines(seconds: dict[str, float], total: float) -> str:
    """``load 1.23 (load_window 0.80, ...), drift ..., rest ...``: phases and load's steps."""
    steps = ", ".join(f"{k} {seconds.get(k, 0.0):.3f}" for k in Stages.STEPS)
    parts = [f"load {seconds.get('load', 0.0):.3f} ({steps})"]
    parts += [f"{k} {seconds.get(k, 0.0):.3f}" for k in Stages.PHASES[1:]]
    rest = total - sum(seconds.get(k, 0.0) for k in Stages.PHASES)
    rest_is = "lease claim/complete, commit, log; cold: the estimator's and reconstruction's fits"
    return ", ".join(parts) + f"; rest ({rest_is}) {rest:.3f}"


def summarise_stages(runs: list[Stages]) -> dict[str, dict[str, float]]:
    """Several runs' stages: median seconds, highest peak, median RSS after, per phase/step."""
    keys = [k for k in (*Stages.PHASES, *Stages.STEPS) if any(k in r.seconds for r in runs)]
    return {
        "seconds": {k: common.median([r.seconds.get(k, 0.0) for r in runs]) for k in keys},
        "peak": {k: max(r.peak.get(k, 0.0) for r in runs) for k in keys},
        "rss_after": {k: common.median([r.rss_after.get(k, 0.0) for r in runs]) for k in keys},
    }


def print_stage_table(totals: dict[str, float], stages: dict[str, dict[str, Any]]) -> str:
    """Phases (and load's steps) per database: median s, peak RSS during, RSS after (GB)."""
    labels = list(stages)
    rows = []
    for key in (*Stages.PHASES[:1], *Stages.STEPS, *Stages.PHASES[1:]):
        name = f"  load: {key}" if key in Stages.STEPS else key
        row = [name]
        row += [f"{stages[lb]['seconds'].get(key, 0.0):.3f}" for lb in labels]
        row += [f"{stages[lb]['peak'].get(key, float('nan')):.2f}" for lb in labels]
        row += [f"{stages[lb]['rss_after'].get(key, float('nan')):.2f}" for lb in labels]
        rows.append(row)
    rest = [
        totals[lb] - sum(stages[lb]["seconds"].get(k, 0.0) for k in Stages.PHASES) for lb in labels
    ]
    rows.append(
        ["rest (leases, commit, log; cold: fits)", *(f"{x:.3f}" for x in rest)]
        + [""] * 2 * len(labels)
    )
    rows.append(["total", *(f"{totals[lb]:.3f}" for lb in labels)] + [""] * 2 * len(labels))
    headers = ["phase", *(f"{lb} s" for lb in labels)]
    headers += [f"{lb} peak during GB" for lb in labels]
    headers += [f"{lb} RSS after GB" for lb in labels]
    return common.print_table(headers, rows)


def analyze(url: str) -> bool:
    """``ANALYZE`` on PostgreSQL, as autovacuum does on a server that runs it (the benchmark
    server has autovacuum off, and freshly filled tables without statistics get nested-loop
    plans); True when it ran."""
    if not url.startswith("postgresql"):
        return False
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return True


def reset_lease(engine: sa.Engine, model_id: int, window: Window) -> None:
    """Forget that the window was analysed, so that the same window can be measured again."""
    from monitor.jobs.analysis import analysis_key

    with begin_write(engine) as conn:
        conn.execute(
            sa.delete(job_leases).where(job_leases.c.key == analysis_key(model_id, window))
        )


def run_job(
    engine: sa.Engine, model_id: int, window: Window, worker: Any = None
) -> tuple[float, Stages, Any]:
    """One ``Worker.analyse`` of the window: (seconds, its stages, the worker)."""
    from monitor.jobs.analysis import AnalysisConfig, Worker

    # The worker logs one line per window (a long one when it drifted): not for the console.
    logging.getLogger("monitor.jobs.analysis").setLevel(logging.ERROR)
    reset_lease(engine, model_id, window)
    worker = worker or Worker(engine, AnalysisConfig())
    with engine.connect() as conn:
        model = models.get_model(conn, common.MODEL)
    gc.collect()
    stages = Stages()
    with stages.around(worker):
        started = time.perf_counter()
        done = worker.analyse(model, window)
        seconds = time.perf_counter() - started
    if not done:
        raise RuntimeError("the worker did not get the window's lease")
    return seconds, stages, worker


def profile_job(engine: sa.Engine, model_id: int, window: Window, top: int = 30) -> str:
    """cProfile of one cold ``analyse`` (slower than unprofiled: for where, not how long)."""
    from monitor.jobs.analysis import AnalysisConfig, Worker

    logging.getLogger("monitor.jobs.analysis").setLevel(logging.ERROR)
    reset_lease(engine, model_id, window)
    worker = Worker(engine, AnalysisConfig())
    with engine.connect() as conn:
        model = models.get_model(conn, common.MODEL)
    profiler = cProfile.Profile()
    profiler.enable()
    worker.analyse(model, window)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(line for line in text.getvalue().splitlines() if line.strip())


# --- the baseline ------------------------------------------------------------------------------


def evidently_frames(engine: sa.Engine, model_id: int, window: Window, fleet: Fleet) -> Any:
    """(current, reference, numerical, categorical): the same rows the job compares, as
    Evidently takes them (features without the ``feature:`` prefix)."""
    from monitor.storage.windows import load_window

    with engine.connect() as conn:
        frame = load_window(conn, model_id, window.start, window.end)
    numerical = [name for name, *_ in common.NUMERIC_FEATURES] + ["proba_ok", "proba_fail"]
    categorical = [name for name, *_ in common.CATEGORICAL_FEATURES] + ["prediction"]
    current = pd.DataFrame(
        {
            **{name: frame[f"feature:{name}"] for name in common.FEATURE_NAMES},
            "prediction": frame["prediction"],
            "proba_ok": frame["proba:ok"],
            "proba_fail": frame["proba:fail"],
        }
    )
    ref = reference_frame(fleet).rename(
        columns={"probability_ok": "proba_ok", "probability_fail": "proba_fail"}
    )
    for name in categorical:
        ref[name] = ref[name].astype("category")
    reference = ref[list(current.columns)]
    return current, reference, numerical, categorical


def run_evidently(current: pd.DataFrame, reference: pd.DataFrame, num: list[str], cat: list[str]):
    """Seconds of ``Report([DataDriftPreset()]).run`` (with ``Dataset.from_pandas`` of both)
    and the columns Evidently found drifted."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    gc.collect()
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            drifted.append(f"share {share:.2f}")
    return seconds, drifted


# --- the run -----------------------------------------------------------------------------------


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="records in the window")
    parser.add_argument("--reps", type=int, help="repetitions (interleaved)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the job")


def fleet_results(engine: sa.Engine, model_id: int, window: Window, fleet: Fleet) -> dict[str, Any]:
    """What the job stored (``results.window``): scope and feature rows per kind, the fleet's
    drifted features, and the node verdicts against the generator's truth (clean pairs:
    features not shifted on that node)."""
    from monitor.schema import FEATURE
    from monitor.storage import results

    with engine.connect() as conn:
        stored = results.window(conn, model_id, window.start)
    if stored is None:
        raise RuntimeError("no results stored for the window")
    shifted = {fleet.names[i] for i in fleet.shifted()}
    clean = flagged = node_judged = node_flagged = 0
    for scope in stored.drift:
        if scope.scope_kind != "node":
            continue
        for f in stored.drift_features.get(scope.id, []):
            if f.role != FEATURE or f.drifted is None or f.feature in FLEET_SHIFT:
                continue
            if f.feature in NODE_SHIFT and scope.scope_key in shifted:
                node_judged += 1
                node_flagged += bool(f.drifted)
                continue
            clean += 1
            flagged += bool(f.drifted)
    return {
        "scopes": {
            "drift": len(stored.drift),
            "quality": len(stored.quality),
            "performance": len(stored.performance),
        },
        "feature_rows": {
            "drift": sum(len(v) for v in stored.drift_features.values()),
            "quality": sum(len(v) for v in stored.quality_features.values()),
        },
        "fleet_drifted": stored.drifted_features(),
        "fleet_prediction_drifted": stored.drift_of().result.prediction_drifted,
        "clean_node_pairs": clean,
        "clean_node_pairs_flagged": flagged,
        "node_shift_flagged": f"{node_flagged}/{node_judged}",
    }


def stored_line(label: str, s: dict[str, Any]) -> str:
    return (
        f"{label} stored scopes {s['scopes']}, feature rows {s['feature_rows']}; fleet drifted "
        f"{s['fleet_drifted']} (prediction/probabilities {s['fleet_prediction_drifted']}); "
        f"node-only shift flagged on {s['node_shift_flagged']} of its (feature, shifted node) "
        f"pairs; clean (feature, node) pairs flagged {s['clean_node_pairs_flagged']}/"
        f"{s['clean_node_pairs']}"
    )


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    rows = args.rows or (20_000 if args.quick else 100_000)
    n_nodes = 40 if args.quick else 100
    reps = args.reps or (2 if args.quick else 5)
    fleet = Fleet(rows, n_nodes, sites=4, groups=8, shifted_every=50)
    info = common.machine_info()
    common.say(f"P4 drift job | {common.machine_line(info)}")
    common.say(
        f"window: {rows:,} records x {len(common.FEATURE_NAMES)} features, {n_nodes} nodes "
        f"(4 sites, 8 groups, {len(fleet.shifted())} shifted nodes), labels for "
        f"{fleet.label_share:.0%}; reference {fleet.reference_rows:,} rows; {reps} reps"
    )
    skip_pg = args.skip_postgres or args.quick
    pg_problem = "skipped" if skip_pg else common.postgres_problem()
    if pg_problem is None:
        info["postgresql"] = common.postgres_version()
    else:
        common.say(f"PostgreSQL: {pg_problem}")
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(common.scratch_dir("p4"))
        urls = {"SQLite": f"sqlite:///{tmp / 'p4.db'}"}
        if pg_problem is None:
            urls["PostgreSQL"] = stack.enter_context(common.postgres_database("bench_p4"))
        for url in urls.values():
            common.migrate(url)
        started = time.perf_counter()
        stored = fill(urls, fleet)
        common.say(
            f"filled in {time.perf_counter() - started:.1f} s ("
            + ", ".join(
                f"{k} insert_batch + labels {v.fill_seconds:.1f} s" for k, v in stored.items()
            )
            + ")"
        )
        for label, where in stored.items():
            engine = make_engine(where.url)
            current, reference, num, cat = evidently_frames(engine, where.model_id, WINDOW, fleet)
            assert len(current) == rows, (len(current), rows)
            before: dict[str, Any] | None = None
            if where.url.startswith("postgresql"):
                seconds, timed, _ = run_job(engine, where.model_id, WINDOW)
                stages = timed.seconds
                before = {
                    "seconds": seconds,
                    "stages": stages,
                    "stage_line": stage_lines(stages, seconds),
                }
                analyze(where.url)
                common.say(
                    f"  {label} before ANALYZE (no table statistics): analyse cold "
                    f"{seconds:.2f} s, of which labels {stages.get('labels', 0.0):.2f} s; "
                    "ANALYZE run, as autovacuum would"
                )
            cold: list[float] = []
            warm: list[float] = []
            evidently: list[float] = []
            stage_runs: list[Stages] = []
            drifted: list[str] = []
            for rep in range(reps):
                order = ("baseline", "subject") if rep % 2 == 0 else ("subject", "baseline")
                for which in order:
                    if which == "baseline":
                        seconds, drifted = run_evidently(current, reference, num, cat)
                        evidently.append(seconds)
                    else:
                        seconds, timed, worker = run_job(engine, where.model_id, WINDOW)
                        cold.append(seconds)
                        stage_runs.append(timed)
                        seconds, _, _ = run_job(engine, where.model_id, WINDOW, worker)
                        warm.append(seconds)
                common.say(
                    f"  {label} rep {rep + 1}: analyse cold {cold[-1]:.2f} s, warm "
                    f"{warm[-1]:.2f} s; Evidently {evidently[-1]:.2f} s "
                    f"(load avg {os.getloadavg()[0]:.2f})"
                )
            stages = summarise_stages(stage_runs)
            r: dict[str, Any] = {
                "cold": cold,
                "warm": warm,
                "evidently": evidently,
                "cold_median": common.median(cold),
                "warm_median": common.median(warm),
                "evidently_median": common.median(evidently),
                "ratio_cold": common.median([c / e for c, e in zip(cold, evidently, strict=True)]),
                "ratio_warm": common.median([w / e for w, e in zip(warm, evidently, strict=True)]),
                "stages_cold": stages,
                "stored": fleet_results(engine, where.model_id, WINDOW, fleet),
                "evidently_drift_share": drifted,
                "fill_seconds": where.fill_seconds,
                "before_analyze": before,
            }
            if args.profile:
                r["profile"] = profile_job(engine, where.model_id, WINDOW)
            out[label] = r
            engine.dispose()
            del current, reference
    common.say("")
    table = []
    for label, r in out.items():
        table.append(
            [
                label,
                f"{r['cold_median']:.2f}",
                f"{r['warm_median']:.2f}",
                f"{r['evidently_median']:.2f}",
                f"{r['ratio_cold']:.3f}",
                f"{r['ratio_warm']:.3f}",
                common.verdict(r["ratio_cold"] <= GOAL),
            ]
        )
    common.print_table(
        [
            "database",
            "analyse, cold s",
            "analyse, warm s",
            "Evidently s",
            "ratio cold",
            "ratio warm",
            "verdict (cold)",
        ],
        table,
    )
    if out:
        common.say(
            "\nPhases of the cold analyse (median s over the reps; peak RSS during the phase, "
            "highest of the reps; the process also holds Evidently's data here, see P5 for the "
            "job alone):"
        )
        print_stage_table(
            {label: r["cold_median"] for label, r in out.items()},
            {label: r["stages_cold"] for label, r in out.items()},
        )
    for label, r in out.items():
        common.say(
            f"{label} (cold, median s): "
            + stage_lines(r["stages_cold"]["seconds"], r["cold_median"])
        )
        if r["before_analyze"]:
            common.say(f"{label} before ANALYZE: " + r["before_analyze"]["stage_line"])
        common.say(stored_line(label, r["stored"]) + f"; Evidently {r['evidently_drift_share']}")
        if "profile" in r:
            common.say(f"{label} cProfile of one cold analyse (top by own time):\n{r['profile']}")
    passed = bool(out) and all(r["ratio_cold"] <= GOAL for r in out.values())
    path = common.write_results(
        "p4_drift_job",
        args.quick,
        {
            "machine": info,
            "params": {"rows": rows, "nodes": n_nodes, "reps": reps, "goal": GOAL},
            "results": out,
            "postgres_problem": pg_problem,
        },
    )
    common.say(f"results: {path}")
    figures = "; ".join(
        f"{label} {r['ratio_cold']:.3f} {common.verdict(r['ratio_cold'] <= GOAL)} "
        f"(warm {r['ratio_warm']:.3f})"
        for label, r in out.items()
    )
    common.say(
        f"P4 ratio Worker.analyse / Evidently DataDriftPreset = {figures}: "
        f"{common.verdict(passed)} (goal <= {GOAL})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
