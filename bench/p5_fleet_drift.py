"""P5: fleet drift end to end on a 1M-row window from 1,000 nodes, against NannyML alone.

The window (P4's generator: 25 features, a class prediction with two probabilities, 1,000
nodes of Zipf-like sizes in 10 groups, no sites; 5 features drift fleet-wide and 2 more on 20
nodes only; labels for 10% of the records) is written to SQLite and PostgreSQL through
``prepare_batch`` + ``insert_batch``, with a registered version holding a 50,000-row reference.

Subject: ``Worker(engine, AnalysisConfig()).analyse(model, window)``, the shipped default
settings (no Evidently snapshot is made by the worker), in a fresh process that does nothing
else (imports first, untimed): load from SQL, drift + quality + performance for the fleet, every
group and every node (1,011 scopes), store the rows. Its phases (load, drift, quality,
performance, store; ``p4_drift_job.Stages``) are timed, with the peak RSS during each (``VmHWM``
reset at the phase's start through ``/proc/self/clear_refs``). Its peak memory is the child's
highest ``VmHWM`` (whole process: interpreter, imports, window, analysis). Not ``ru_maxrss``:
Linux carries the high-water mark of the image a process replaces at ``exec`` into it, so a
child started from this (large) parent reports the parent's size.

Baseline: NannyML 0.13.1's fast configuration, comparable with the job's fleet-wide drift:
``UnivariateDriftCalculator(continuous_methods=["jensen_shannon"],
categorical_methods=["chi2"], chunk_number=1)`` with constant thresholds (Jensen-Shannon 0.1;
NannyML's chi2 alerts on p < 0.05 whatever the threshold; with one chunk its default
thresholds collapse, FINDINGS.md), on the same fleet-wide rows (the window as the job loads it)
and the same reference, the 28 columns the job analyses. It runs in the project's environment
(nannyml and statsmodels are installed there) in a fresh process that imports only pandas and
nannyml and reads both Parquet files before the timer starts; ``fit`` on the reference plus
``calculate`` on the window are timed, from the DataFrames in memory. Ratio = job / (fit +
calculate), median of the per-repetition ratios; goals: ratio <= 1.0 and the job's peak RSS
<= 1 GB.

    .venv/bin/python bench/p5_fleet_drift.py --profile # 1M rows, SQLite and PostgreSQL
    .venv/bin/python bench/p5_fleet_drift.py --quick   # 50k rows, 100 nodes, SQLite; < 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import p4_drift_job as p4

GOAL_RATIO = 1.0
GOAL_PEAK_GB = 1.0
#: The baseline's process: only pandas and nannyml imported (the project's modules are not,
#: so its peak memory is NannyML's own).
NANNYML_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import nannyml as nml
from nannyml.thresholds import ConstantThreshold

def peak_gb(key="VmHWM"):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1e6

reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
kinds = json.loads(sys.argv[3])
rss_before = peak_gb("VmRSS")
started = time.perf_counter()
calculator = nml.UnivariateDriftCalculator(
    column_names=kinds["numerical"] + kinds["categorical"],
    treat_as_categorical=kinds["categorical"],
    continuous_methods=["jensen_shannon"],
    categorical_methods=["chi2"],
    chunk_number=1,
    thresholds={
        "jensen_shannon": ConstantThreshold(upper=0.1),
        "chi2": ConstantThreshold(upper=0.05),
    },
)
calculator.fit(reference)
fit_seconds = time.perf_counter() - started
started = time.perf_counter()
result = calculator.calculate(current)
seconds = time.perf_counter() - started
frame = result.filter(period="analysis").to_df()
alerts = sorted(
    column for column, method, field in frame.columns
    if field == "alert" and bool(frame[(column, method, field)].iloc[-1])
)
print(json.dumps({
    "seconds": fit_seconds + seconds,
    "fit_seconds": fit_seconds,
    "calculate_seconds": seconds,
    "rows": len(current),
    "alerts": alerts,
    "rss_before_gb": rss_before,
    "peak_gb": peak_gb(),
    "nannyml": nml.__version__,
}))
"""


# --- children ----------------------------------------------------------------------------------


def job_child(url: str, model_id: int, profile: bool) -> dict[str, Any]:
    """One cold ``Worker.analyse`` of the window in this (fresh) process."""
    import monitor.jobs.analysis  # noqa: F401  (imports are not the job's time)
    from monitor.storage.engine import make_engine

    engine = make_engine(url)
    before = p4.memory_gb("VmRSS")
    if profile:
        text = p4.profile_job(engine, model_id, p4.WINDOW, top=20)
        return {"profile": text}
    seconds, stages, _ = p4.run_job(engine, model_id, p4.WINDOW)
    engine.dispose()
    return {
        "seconds": seconds,
        "stages": stages.seconds,
        "peak": stages.peak,
        "rss_after": stages.rss_after,
        "peak_exact": stages.exact,
        "rss_before_gb": before,
        "peak_gb": stages.fold(),
    }


def _child_json(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_job_child(url: str, model_id: int, profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child-job", url, str(model_id)]
    return _child_json(cmd + (["--profile"] if profile else []))


def run_baseline_child(directory: Path) -> dict[str, Any]:
    kinds = (directory / "kinds.json").read_text()
    return _child_json(
        [
            sys.executable,
            "-c",
            NANNYML_CHILD,
            str(directory / "reference.parquet"),
            str(directory / "current.parquet"),
            kinds,
        ]
    )


def nannyml_problem() -> str | None:
    """Why NannyML cannot run in this environment, or None (its version is printed)."""
    check = [sys.executable, "-c", "import nannyml, statsmodels; print(nannyml.__version__)"]
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return f"nannyml does not import: {done.stderr.strip()[-500:]}"
    return None


def write_baseline_data(url: str, model_id: int, fleet: p4.Fleet, directory: Path) -> int:
    """The window as the job loads it and the reference, as Parquet for the baseline."""
    from monitor.storage.engine import make_engine

    engine = make_engine(url)
    current, reference, numerical, categorical = p4.evidently_frames(
        engine, model_id, p4.WINDOW, fleet
    )
    engine.dispose()
    current.to_parquet(directory / "current.parquet", index=False)
    reference.to_parquet(directory / "reference.parquet", index=False)
    kinds = {"numerical": numerical, "categorical": categorical}
    (directory / "kinds.json").write_text(json.dumps(kinds))
    return len(current)


# --- the run -----------------------------------------------------------------------------------


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="records in the window")
    parser.add_argument("--reps", type=int, help="repetitions (interleaved, fresh processes)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--skip-no-stats",
        action="store_true",
        help="skip the PostgreSQL run before ANALYZE",
    )
    parser.add_argument("--child-job", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="cProfile one job (SQLite)")


BASELINE = "NannyML fit + calculate"


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    if args.child_job:
        url, model_id = args.child_job
        print(json.dumps(job_child(url, int(model_id), args.profile)))
        return 0
    rows = args.rows or (50_000 if args.quick else 1_000_000)
    n_nodes = 100 if args.quick else 1_000
    reps = args.reps or (1 if args.quick else 3)
    fleet = p4.Fleet(rows, n_nodes, sites=0, groups=10, shifted_every=50)
    info = common.machine_info()
    common.say(f"P5 fleet drift | {common.machine_line(info)}")
    common.say(
        f"window: {rows:,} records x {len(common.FEATURE_NAMES)} features, {n_nodes:,} nodes "
        f"in {fleet.groups} groups ({len(fleet.shifted())} shifted nodes), labels for "
        f"{fleet.label_share:.0%}; reference {fleet.reference_rows:,} rows; {reps} reps"
    )
    problem = nannyml_problem()
    if problem is not None:
        common.say(f"baseline: {problem}; install nannyml==0.13.1 and statsmodels")
        return 1
    skip_pg = args.skip_postgres or args.quick
    pg_problem = "skipped" if skip_pg else common.postgres_problem()
    if pg_problem is None:
        info["postgresql"] = common.postgres_version()
    else:
        common.say(f"PostgreSQL: {pg_problem}")
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(common.scratch_dir("p5"))
        urls = {"SQLite": f"sqlite:///{tmp / 'p5.db'}"}
        if pg_problem is None:
            urls["PostgreSQL"] = stack.enter_context(common.postgres_database("bench_p5"))
        for url in urls.values():
            common.migrate(url)
        started = time.perf_counter()
        stored = p4.fill(urls, fleet)
        common.say(
            f"filled in {time.perf_counter() - started:.1f} s ("
            + ", ".join(
                f"{k} insert_batch + labels {v.fill_seconds:.1f} s" for k, v in stored.items()
            )
            + ")"
        )
        n = write_baseline_data(urls["SQLite"], stored["SQLite"].model_id, fleet, tmp)
        assert n == rows, (n, rows)
        before_analyze: dict[str, Any] | None = None
        if "PostgreSQL" in stored:
            where = stored["PostgreSQL"]
            if not args.skip_no_stats:
                before_analyze = run_job_child(where.url, where.model_id)
                common.say(
                    f"  PostgreSQL before ANALYZE (no table statistics): job "
                    f"{before_analyze['seconds']:.2f} s (peak {before_analyze['peak_gb']:.2f} "
                    f"GB): {p4.stage_lines(before_analyze['stages'], before_analyze['seconds'])}"
                )
            p4.analyze(where.url)
            common.say("  PostgreSQL: ANALYZE run, as autovacuum would (off on this server)")
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], **{k: [] for k in urls}}
        for rep in range(reps):
            runs["baseline"].append(run_baseline_child(tmp))
            for label, where in stored.items():
                runs[label].append(run_job_child(where.url, where.model_id))
            b = runs["baseline"][-1]
            common.say(
                f"  rep {rep + 1}: {BASELINE} {b['seconds']:.2f} s (fit {b['fit_seconds']:.2f}, "
                f"calculate {b['calculate_seconds']:.2f}), "
                + ", ".join(
                    f"{k} job {runs[k][-1]['seconds']:.2f} s (peak {runs[k][-1]['peak_gb']:.2f} GB)"
                    for k in stored
                )
                + f" (load avg {os.getloadavg()[0]:.2f})"
            )
        base = [r["seconds"] for r in runs["baseline"]]
        for label in stored:
            secs = [r["seconds"] for r in runs[label]]
            keys = [
                k for k in (*p4.Stages.PHASES, *p4.Stages.STEPS) if k in runs[label][0]["stages"]
            ]
            out[label] = {
                "seconds": secs,
                "median": common.median(secs),
                "ratios": [s / b for s, b in zip(secs, base, strict=True)],
                "ratio": common.median([s / b for s, b in zip(secs, base, strict=True)]),
                "peak_gb": max(r["peak_gb"] for r in runs[label]),
                "peaks_gb": [r["peak_gb"] for r in runs[label]],
                "peak_exact": all(r["peak_exact"] for r in runs[label]),
                "rss_before_gb": common.median([r["rss_before_gb"] for r in runs[label]]),
                "stages": {
                    "seconds": {
                        k: common.median([r["stages"].get(k, 0.0) for r in runs[label]])
                        for k in keys
                    },
                    "peak": {k: max(r["peak"].get(k, 0.0) for r in runs[label]) for k in keys},
                    "rss_after": {
                        k: common.median([r["rss_after"].get(k, 0.0) for r in runs[label]])
                        for k in keys
                    },
                },
                "fill_seconds": stored[label].fill_seconds,
                "stored": None,
                "before_analyze": before_analyze if label == "PostgreSQL" else None,
            }
            from monitor.storage.engine import make_engine

            engine = make_engine(stored[label].url)
            out[label]["stored"] = p4.fleet_results(
                engine, stored[label].model_id, p4.WINDOW, fleet
            )
            engine.dispose()
        if args.profile:
            out["SQLite"]["profile"] = run_job_child(
                stored["SQLite"].url, stored["SQLite"].model_id, profile=True
            )["profile"]
    baseline = {
        "name": BASELINE,
        "config": "UnivariateDriftCalculator(continuous_methods=['jensen_shannon'], "
        "categorical_methods=['chi2'], chunk_number=1), ConstantThreshold(upper=0.1) for JS",
        "seconds": base,
        "median": common.median(base),
        "fit_seconds": [r["fit_seconds"] for r in runs["baseline"]],
        "calculate_seconds": [r["calculate_seconds"] for r in runs["baseline"]],
        "fit_median": common.median([r["fit_seconds"] for r in runs["baseline"]]),
        "calculate_median": common.median([r["calculate_seconds"] for r in runs["baseline"]]),
        "peak_gb": max(r["peak_gb"] for r in runs["baseline"]),
        "rss_before_gb": common.median([r["rss_before_gb"] for r in runs["baseline"]]),
        "alerts": runs["baseline"][-1].get("alerts"),
        "nannyml": runs["baseline"][-1].get("nannyml"),
    }
    common.say("")
    table = [
        [
            f"{BASELINE} (fleet only; fit {baseline['fit_median']:.2f} + calculate "
            f"{baseline['calculate_median']:.2f})",
            f"{baseline['median']:.2f}",
            f"{baseline['peak_gb']:.2f}",
            "-",
            "-",
            "-",
        ]
    ]
    for label, r in out.items():
        table.append(
            [
                f"{label}: Worker.analyse, {r['stored']['scopes']['drift']:,} scopes",
                f"{r['median']:.2f}",
                f"{r['peak_gb']:.2f}",
                f"{r['ratio']:.2f}",
                common.verdict(r["ratio"] <= GOAL_RATIO),
                common.verdict(r["peak_gb"] <= GOAL_PEAK_GB),
            ]
        )
    common.print_table(
        [
            "run",
            "median s",
            "peak RSS GB",
            "ratio",
            f"ratio <= {GOAL_RATIO}",
            f"peak <= {GOAL_PEAK_GB} GB",
        ],
        table,
    )
    if out:
        exact = all(r["peak_exact"] for r in out.values())
        common.say(
            "\nPhases of the job (median s over the reps; peak RSS during the phase, "
            + ("VmHWM reset at its start" if exact else "the process's peak so far")
            + ", highest of the reps; RSS after the phase, median):"
        )
        p4.print_stage_table(
            {label: r["median"] for label, r in out.items()},
            {label: r["stages"] for label, r in out.items()},
        )
    for label, r in out.items():
        common.say(
            f"{label} (median s): {p4.stage_lines(r['stages']['seconds'], r['median'])}; "
            f"RSS before analyse {r['rss_before_gb']:.2f} GB"
        )
        common.say(p4.stored_line(label, r["stored"]))
        if "profile" in r:
            common.say(f"{label} cProfile of one analyse (top by own time):\n{r['profile']}")
    common.say(
        f"baseline: nannyml {baseline['nannyml']}, RSS {baseline['rss_before_gb']:.2f} GB with "
        f"both frames read; alerts (JS > 0.1 / chi2 p < 0.05, fleet only): {baseline['alerts']}"
    )
    passed = bool(out) and all(
        r["ratio"] <= GOAL_RATIO and r["peak_gb"] <= GOAL_PEAK_GB for r in out.values()
    )
    path = common.write_results(
        "p5_fleet_drift",
        args.quick,
        {
            "machine": info,
            "params": {"rows": rows, "nodes": n_nodes, "reps": reps},
            "baseline": baseline,
            "results": out,
            "postgres_problem": pg_problem,
        },
    )
    common.say(f"results: {path}")
    figures = "; ".join(
        f"{label} ratio {r['ratio']:.2f} {common.verdict(r['ratio'] <= GOAL_RATIO)}, "
        f"peak {r['peak_gb']:.2f} GB {common.verdict(r['peak_gb'] <= GOAL_PEAK_GB)}"
        for label, r in out.items()
    )
    common.say(
        f"P5 Worker.analyse / {BASELINE} = {figures}: {common.verdict(passed)} "
        f"(goals: ratio <= {GOAL_RATIO}, peak RSS <= {GOAL_PEAK_GB} GB)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
