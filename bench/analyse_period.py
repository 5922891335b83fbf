"""Issue 13: ``edge-monitor analyse --from --to`` over a year of monthly windows, against P4's
single window analysed twelve times.

A model with a calendar-month window policy (UTC) holds 12 months of 2025, each filled like
P4's window (``p4_drift_job``'s generator: 25 sensor-like features, the pump model's class and
probabilities, 100 nodes of Zipf-like sizes at 4 sites in 8 groups, 5 features drifting
fleet-wide and 2 more on 2 nodes only, labels for 10%; a fresh seed per month), 100,000
records a month, written through ``prepare_batch`` + ``insert_batch`` into SQLite and
PostgreSQL (then ``ANALYZE``, as P4), with P4's registered, promoted version and its 50,000-row
reference.

Subject: ``Worker(engine, AnalysisConfig()).analyse_period(model, 2025-01-01, 2026-01-01)``,
what ``edge-monitor analyse --from --to`` runs: list the period's windows by the model's
policy, and for each one reopen its lease and ``analyse`` it (every month already has results
from an untimed first pass, so each run replaces them, as a re-analysis does). "Cold" is a
fresh Worker (its reference cache empty: the first window reads and profiles the reference);
"warm" is the same Worker again.

Baseline: P4's subject on each of those months alone: ``Worker.analyse`` of the month with a
fresh Worker (cold), then the same Worker again (warm), its lease deleted before each run, its
results replaced as well; summed over the 12 months, i.e. P4's single window times 12, measured
on every month (one month times 12, June's, is printed too: one 0.6 s run is noisier on a
loaded machine than twelve). Interleaved repetitions (alternating which goes first), PostgreSQL
``VACUUM ANALYZE``d before each (as autovacuum would; the benchmark server runs none); ratio =
median of per-repetition ratios, subject / baseline. Goal: <= 1.0 (cold), i.e. the period
costs no more than its windows analysed one by one. As in P4, ``gc.collect()`` runs before each
timed call, untimed: before each month alone (12 per baseline) and once before the period,
whose windows then pay the automatic collections Python makes as they go (about 0.3 s a year
at 100,000 rows a month, seen as slower ``labels`` and ``drift`` steps), which the baseline's
untimed collections (about 0.8 s) spare it.

    .venv/bin/python bench/analyse_period.py            # 12 x 100,000 rows, both databases
    .venv/bin/python bench/analyse_period.py --profile  # and a cProfile of one cold period
    .venv/bin/python bench/analyse_period.py --quick    # 12 x 5,000 rows, SQLite; < 30 s
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
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

import common
import p4_drift_job as p4
from monitor.commands.windows import set_window_policy
from monitor.jobs.windows import Window
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.labels import upsert_labels
from monitor.storage.policies import Calendar
from monitor.storage.records import insert_batch, prepare_batch

GOAL = 1.0
POLICY = Calendar("month", "UTC")
YEAR = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
MONTHS = POLICY.windows(*YEAR)
#: The month P4's single-window subject analyses.
SINGLE = MONTHS[5]


# --- the data ------------------------------------------------------------------------------------


def register(url: str, fleet: p4.Fleet) -> tuple[int, int, list[int]]:
    """P4's model, version (with its reference, promoted) and nodes, and a monthly policy:
    (model id, version id, node ids)."""
    reference = p4.reference_frame(fleet)
    buffer = io.BytesIO()
    reference.to_parquet(buffer, index=False)
    engine = make_engine(url)
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, common.MODEL, description="benchmark").id
        registry.register_version(
            conn,
            model_id,
            common.MODEL_VERSION,
            artifact=b"bench: no artifact is run",
            card=p4.card(),
            reference=buffer.getvalue(),
            reference_rows=len(reference),
        )
        registry.promote(conn, model_id, common.MODEL_VERSION)
        version_id = models.version_id(conn, model_id, common.MODEL_VERSION)
        node_ids = [
            nodes.add_node(conn, name, group_name=fleet.group(i), site=fleet.site(i))[0].id
            for i, name in enumerate(fleet.names)
        ]
    set_window_policy(engine, common.MODEL, POLICY, timedelta(minutes=15))
    engine.dispose()
    return model_id, version_id, node_ids


def fill_month(
    engines: dict[str, sa.Engine],
    ids: dict[str, tuple[int, int, list[int]]],
    fleet: p4.Fleet,
    window: Window,
    seed: int,
) -> dict[str, float]:
    """One month of records as ``p4_drift_job.fill`` writes its window (same shape, drift and
    labels; times spread over the month), into every database: seconds of writing per database."""
    seconds = dict.fromkeys(engines, 0.0)
    rng = np.random.default_rng(seed)
    sizes = fleet.sizes()
    node = np.repeat(np.arange(fleet.nodes), sizes)
    n = node.size
    span = (window.end - window.start).total_seconds()
    ts = window.start.timestamp() + np.sort(rng.uniform(0.0, span, n))
    rng.shuffle(node)
    moved = np.isin(node, fleet.shifted())
    cols = p4.columns(rng, n, p4.FLEET_SHIFT, moved)
    out = p4.predictions(rng, cols)
    latency = np.round(rng.lognormal(np.log(1.5), 0.3, n), 3)
    order = np.lexsort((ts, node))
    labelled = rng.random(n) < fleet.label_share
    names = list(cols)
    pending: list[tuple[int, Any]] = []
    labels: list[dict[str, Any]] = []

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
            seconds[label] += time.perf_counter() - started
        pending.clear()

    boundaries = np.flatnonzero(np.diff(node[order])) + 1
    for chunk in np.split(order, boundaries):
        node_index = int(node[chunk[0]])
        for start in range(0, chunk.size, p4.BATCH):
            rows = chunk[start : start + p4.BATCH]
            values = [cols[name][rows].tolist() for name in names]
            records = []
            for row, p, ok, fail, ms, t, tagged, truth in zip(
                zip(*values, strict=True),
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
                        "features": dict(zip(names, row, strict=True)),
                        "prediction": p,
                        "probabilities": {"ok": ok, "fail": fail},
                        "latency_ms": ms,
                    }
                )
                if tagged:
                    labels.append({"request_id": uid, "label": truth, "ts": t + 3600.0})
            pending.append((node_index, prepare_batch(records)))
            if len(pending) >= p4.BATCHES_PER_TRANSACTION:
                flush()
    if pending:
        flush()
    for label, engine in engines.items():
        started = time.perf_counter()
        for start in range(0, len(labels), 10_000):
            with begin_write(engine) as conn:
                upsert_labels(
                    conn, model_id=ids[label][0], node_id=None, rows=labels[start : start + 10_000]
                )
        seconds[label] += time.perf_counter() - started
    return seconds


# --- the subject and the baseline ----------------------------------------------------------------


def _quiet() -> None:
    # The worker logs one line per window (a long one when it drifted): not for the console.
    logging.getLogger("monitor.jobs.analysis").setLevel(logging.ERROR)


def _worker(engine: sa.Engine) -> Any:
    from monitor.jobs.analysis import AnalysisConfig, Worker

    return Worker(engine, AnalysisConfig())


def _model(engine: sa.Engine) -> models.Model:
    with engine.connect() as conn:
        return models.get_model(conn, common.MODEL)


def run_period(engine: sa.Engine, worker: Any = None) -> tuple[float, p4.Stages, Any]:
    """One ``analyse_period`` of the year: (seconds, its stages summed over the windows,
    the worker)."""
    _quiet()
    worker = worker or _worker(engine)
    model = _model(engine)
    gc.collect()
    stages = p4.Stages()
    with stages.around(worker):
        started = time.perf_counter()
        done = worker.analyse_period(model, *YEAR)
        seconds = time.perf_counter() - started
    if len(done.analysed) != len(MONTHS) or done.busy:
        raise RuntimeError(f"analysed {len(done.analysed)} windows, busy {len(done.busy)}")
    return seconds, stages, worker


def profile_period(engine: sa.Engine, top: int = 25) -> str:
    """cProfile of one cold ``analyse_period`` (slower than unprofiled: for where, not how
    long), by cumulative and own time."""
    _quiet()
    worker = _worker(engine)
    model = _model(engine)
    profiler = cProfile.Profile()
    profiler.enable()
    worker.analyse_period(model, *YEAR)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(line for line in text.getvalue().splitlines() if line.strip())


# --- the run -------------------------------------------------------------------------------------


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="records per month")
    parser.add_argument("--reps", type=int, help="repetitions (interleaved)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of a period")


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE`` on PostgreSQL, as autovacuum would (the benchmark server runs none):
    without it, the dead result rows every re-analysis leaves, and statistics taken while the
    result tables were empty, slow its results' replacement down several-fold as the run goes."""
    if url.startswith("postgresql"):
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()


def summed(runs: list[p4.Stages]) -> p4.Stages:
    """Several runs' stages as one run's: seconds added, the highest peaks, the last RSS."""
    total = p4.Stages()
    for run in runs:
        for key, value in run.seconds.items():
            total.seconds[key] = total.seconds.get(key, 0.0) + value
        for key, value in run.peak.items():
            total.peak[key] = max(total.peak.get(key, 0.0), value)
        total.rss_after.update(run.rss_after)
    return total


def run_singles(engine: sa.Engine, model_id: int) -> tuple[list[float], list[float], p4.Stages]:
    """P4's subject on each month alone: a fresh Worker (cold), then the same one again (warm);
    (cold seconds per month, warm seconds per month, the cold runs' stages summed)."""
    cold: list[float] = []
    warm: list[float] = []
    stages: list[p4.Stages] = []
    for month in MONTHS:
        seconds, timed, worker = p4.run_job(engine, model_id, month)
        cold.append(seconds)
        stages.append(timed)
        seconds, _, _ = p4.run_job(engine, model_id, month, worker)
        warm.append(seconds)
    return cold, warm, summed(stages)


def measure(label: str, url: str, model_id: int, reps: int) -> dict[str, Any]:
    """Interleaved repetitions of the baseline (each month alone, cold then warm) and the
    subject (the year, cold then warm) on one database."""
    engine = make_engine(url)
    run_period(engine)  # untimed: every month gets results, so every timed run replaces them
    n = len(MONTHS)
    single = MONTHS.index(SINGLE)
    months_cold: list[list[float]] = []
    months_warm: list[list[float]] = []
    period_cold: list[float] = []
    period_warm: list[float] = []
    stage_single: list[p4.Stages] = []
    stage_period: list[p4.Stages] = []
    for rep in range(reps):
        order = ("baseline", "subject") if rep % 2 == 0 else ("subject", "baseline")
        for which in order:
            vacuum(url)
            if which == "baseline":
                cold, warm, stages = run_singles(engine, model_id)
                months_cold.append(cold)
                months_warm.append(warm)
                stage_single.append(stages)
            else:
                seconds, stages, worker = run_period(engine)
                period_cold.append(seconds)
                stage_period.append(stages)
                seconds, _, _ = run_period(engine, worker)
                period_warm.append(seconds)
        common.say(
            f"  {label} rep {rep + 1}: each month alone cold {sum(months_cold[-1]):.2f} s "
            f"(June {months_cold[-1][single]:.2f} s), warm {sum(months_warm[-1]):.2f} s (June "
            f"{months_warm[-1][single]:.2f} s); the year cold {period_cold[-1]:.2f} s, warm "
            f"{period_warm[-1]:.2f} s (load avg {os.getloadavg()[0]:.2f})"
        )
    engine.dispose()

    def ratio(period: list[float], baseline: list[float]) -> float:
        return common.median([p / b for p, b in zip(period, baseline, strict=True)])

    sums_cold = [sum(m) for m in months_cold]
    sums_warm = [sum(m) for m in months_warm]
    june_cold = [n * m[single] for m in months_cold]
    june_warm = [n * m[single] for m in months_warm]
    return {
        "months_cold": months_cold,
        "months_warm": months_warm,
        "period_cold": period_cold,
        "period_warm": period_warm,
        "months_cold_median": common.median(sums_cold),
        "months_warm_median": common.median(sums_warm),
        "june_cold_median": common.median([m[single] for m in months_cold]),
        "june_warm_median": common.median([m[single] for m in months_warm]),
        "period_cold_median": common.median(period_cold),
        "period_warm_median": common.median(period_warm),
        "ratio_cold": ratio(period_cold, sums_cold),
        "ratio_warm": ratio(period_warm, sums_warm),
        "ratio_june_cold": ratio(period_cold, june_cold),
        "ratio_june_warm": ratio(period_warm, june_warm),
        "stages_months_cold": p4.summarise_stages(stage_single),
        "stages_period_cold": p4.summarise_stages(stage_period),
    }


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    rows = args.rows or (5_000 if args.quick else 100_000)
    n_nodes = 10 if args.quick else 100
    sites, groups = (2, 4) if args.quick else (4, 8)
    reps = args.reps or (2 if args.quick else 3)
    fleet = p4.Fleet(rows, n_nodes, sites=sites, groups=groups, shifted_every=50)
    info = common.machine_info()
    common.say(f"analyse --from --to | {common.machine_line(info)}")
    common.say(
        f"{len(MONTHS)} monthly windows of {rows:,} records x {len(common.FEATURE_NAMES)} "
        f"features, {n_nodes} nodes ({sites} sites, {groups} groups, {len(fleet.shifted())} "
        f"shifted; smallest node {int(fleet.sizes().min()):,} records a month), labels for "
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
        tmp = stack.enter_context(common.scratch_dir("analyse-period"))
        urls = {"SQLite": f"sqlite:///{tmp / 'period.db'}"}
        if pg_problem is None:
            urls["PostgreSQL"] = stack.enter_context(common.postgres_database("bench_period"))
        ids = {}
        for label, url in urls.items():
            common.migrate(url)
            ids[label] = register(url, fleet)
        engines = {label: make_engine(url) for label, url in urls.items()}
        started = time.perf_counter()
        fill_seconds = dict.fromkeys(urls, 0.0)
        for index, month in enumerate(MONTHS):
            spent = fill_month(engines, ids, fleet, month, fleet.seed + index)
            for label, s in spent.items():
                fill_seconds[label] += s
        for engine in engines.values():
            engine.dispose()
        for url in urls.values():
            p4.analyze(url)
        common.say(
            f"filled in {time.perf_counter() - started:.1f} s ("
            + ", ".join(f"{k} insert_batch + labels {v:.1f} s" for k, v in fill_seconds.items())
            + ")"
        )
        for label, url in urls.items():
            r = measure(label, url, ids[label][0], reps)
            r["fill_seconds"] = fill_seconds[label]
            if args.profile:
                r["profile"] = profile_period(make_engine(url))
            out[label] = r
    common.say("")
    n = len(MONTHS)
    table = []
    for label, r in out.items():
        table.append(
            [
                label,
                f"{r['months_cold_median']:.2f}",
                f"{r['months_warm_median']:.2f}",
                f"{r['period_cold_median']:.2f}",
                f"{r['period_warm_median']:.2f}",
                f"{r['ratio_cold']:.3f}",
                f"{r['ratio_warm']:.3f}",
                f"{r['ratio_june_cold']:.3f} ({r['june_cold_median']:.2f} s)",
                f"{r['ratio_june_warm']:.3f} ({r['june_warm_median']:.2f} s)",
                common.verdict(r["ratio_cold"] <= GOAL),
            ]
        )
    common.print_table(
        [
            "database",
            f"{n} months alone, cold s",
            f"{n} months alone, warm s",
            "analyse_period, cold s",
            "analyse_period, warm s",
            "ratio cold",
            "ratio warm",
            f"ratio cold to June x {n}",
            f"ratio warm to June x {n}",
            "verdict (cold)",
        ],
        table,
    )
    for label, r in out.items():
        common.say(
            f"{label} each month alone, cold (median s, summed over the months): "
            + p4.stage_lines(r["stages_months_cold"]["seconds"], r["months_cold_median"])
        )
        common.say(
            f"{label} analyse_period, cold (median s, summed over the windows): "
            + p4.stage_lines(r["stages_period_cold"]["seconds"], r["period_cold_median"])
        )
        if "profile" in r:
            common.say(f"{label} cProfile of one cold analyse_period:\n{r['profile']}")
    passed = bool(out) and all(r["ratio_cold"] <= GOAL for r in out.values())
    path = common.write_results(
        "analyse_period",
        args.quick,
        {
            "machine": info,
            "params": {
                "rows_per_month": rows,
                "months": n,
                "nodes": n_nodes,
                "reps": reps,
                "goal": GOAL,
                "single": SINGLE.start.isoformat(),
            },
            "results": out,
            "postgres_problem": pg_problem,
            "passed": passed,
        },
    )
    common.say(f"results: {path}")
    figures = "; ".join(
        f"{label} {r['ratio_cold']:.3f} {common.verdict(r['ratio_cold'] <= GOAL)} "
        f"(warm {r['ratio_warm']:.3f})"
        for label, r in out.items()
    )
    common.say(
        f"ratio analyse_period of {n} months / Worker.analyse of each month alone = {figures}: "
        f"{common.verdict(passed)} (goal <= {GOAL})"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
