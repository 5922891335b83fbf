"""P5: fleet drift end to end on a 1M-row window from 1,000 nodes, against NannyML alone.

The window (P4's generator: 25 features, a class prediction with two probabilities, 1,000
nodes of Zipf-like sizes in 10 groups, no sites; 5 features drift fleet-wide and 2 more on 20
nodes only; labels for 10% of the records) is written to SQLite and PostgreSQL through
``prepare_batch`` + ``insert_batch``, with a registered version holding a 50,000-row reference.

Subject: ``Worker(engine, AnalysisConfig(snapshots=False)).analyse(model, window)`` in a fresh
process that does nothing else (imports first, untimed): load from SQL, drift + quality +
performance for the fleet, every group and every node (1,011 scopes), store the rows. Its peak
memory is the child's ``VmHWM`` (whole process: interpreter, imports, window, analysis). Not
``ru_maxrss``: Linux carries the high-water mark of the image a process replaces at ``exec``
into it, so a child started from this (large) parent reports the parent's size.

Baseline: NannyML 0.13.1's ``UnivariateDriftCalculator`` on the same fleet-wide rows (the
window as the job loads it, written to Parquet) and the same reference, the 28 columns the job
analyses, one chunk (``chunk_number=1``), Wasserstein for numbers and Jensen-Shannon for
categories (Evidently's methods at this size) with constant thresholds of 0.1 (with one chunk
its default thresholds collapse, FINDINGS.md). It runs in its own virtual environment
(``/tmp/edge-monitor-bench/venv-nannyml``, made by this script: ``pip install nannyml==0.13.1
statsmodels``) in a fresh process; only ``calculate`` is timed (``fit`` on the reference is
not). Without that environment (``--quick`` never creates it) the baseline is a scipy loop with
Evidently's rule (normed Wasserstein / Jensen-Shannon at 0.1, FINDINGS.md), labelled as such.

    .venv/bin/python bench/p5_fleet_drift.py           # 1M rows, SQLite and PostgreSQL
    .venv/bin/python bench/p5_fleet_drift.py --quick   # 50k rows, 100 nodes, SQLite; < 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import p4_drift_job as p4

GOAL_RATIO = 1.0
GOAL_PEAK_GB = 1.0
VENV = Path("/tmp/edge-monitor-bench/venv-nannyml")
NANNYML = "nannyml==0.13.1"

#: Run by the NannyML environment's interpreter: the project is not importable there.
NANNYML_CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import nannyml as nml
from nannyml.thresholds import ConstantThreshold

def peak_gb():
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1e6

reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
kinds = json.loads(sys.argv[3])
calculator = nml.UnivariateDriftCalculator(
    column_names=kinds["numerical"] + kinds["categorical"],
    treat_as_categorical=kinds["categorical"],
    continuous_methods=["wasserstein"],
    categorical_methods=["jensen_shannon"],
    chunk_number=1,
    thresholds={
        "wasserstein": ConstantThreshold(upper=0.1),
        "jensen_shannon": ConstantThreshold(upper=0.1),
    },
)
started = time.perf_counter()
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
    "seconds": seconds,
    "fit_seconds": fit_seconds,
    "rows": len(current),
    "alerts": alerts,
    "peak_gb": peak_gb(),
    "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
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
        "peak_after": stages.peak_after,
        "rss_before_gb": before,
        "peak_gb": p4.memory_gb("VmHWM"),
        "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def scipy_child(directory: Path) -> dict[str, Any]:
    """The fallback baseline: a plain loop over the columns, Evidently's rule (FINDINGS.md)."""
    import numpy as np
    import pandas as pd
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    reference = pd.read_parquet(directory / "reference.parquet")
    current = pd.read_parquet(directory / "current.parquet")
    kinds = json.loads((directory / "kinds.json").read_text())
    started = time.perf_counter()
    alerts = []
    for name in kinds["numerical"]:
        ref = reference[name].to_numpy(dtype=float)
        cur = current[name].to_numpy(dtype=float)
        norm = max(float(np.std(ref)), 0.001)
        if wasserstein_distance(ref / norm, cur / norm) >= 0.1:
            alerts.append(name)
    for name in kinds["categorical"]:
        levels = sorted(set(reference[name].astype(str)) | set(current[name].astype(str)))
        p = reference[name].astype(str).value_counts().reindex(levels, fill_value=0).to_numpy()
        q = current[name].astype(str).value_counts().reindex(levels, fill_value=0).to_numpy()
        if jensenshannon(p / p.sum(), q / q.sum()) >= 0.1:
            alerts.append(name)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "alerts": sorted(alerts),
        "peak_gb": p4.memory_gb("VmHWM"),
    }


def _child_json(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_job_child(url: str, model_id: int, profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child-job", url, str(model_id)]
    return _child_json(cmd + (["--profile"] if profile else []))


def run_baseline_child(python: Path | None, directory: Path) -> dict[str, Any]:
    if python is None:
        return _child_json([sys.executable, __file__, "--child-scipy", str(directory)])
    kinds = (directory / "kinds.json").read_text()
    return _child_json(
        [
            str(python),
            "-c",
            NANNYML_CHILD,
            str(directory / "reference.parquet"),
            str(directory / "current.parquet"),
            kinds,
        ]
    )


# --- NannyML's own environment -----------------------------------------------------------------


def nannyml_python(create: bool) -> tuple[Path | None, str]:
    """The NannyML environment's interpreter (made when ``create``), or None and why not."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import nannyml, statsmodels; print(nannyml.__version__)"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode == 0:
            return python, f"nannyml {done.stdout.strip()} in {VENV}"
    if not create:
        return None, f"no NannyML environment at {VENV} (made by a full run)"
    common.say(f"making {VENV}: pip install {NANNYML} statsmodels (a few minutes)")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        ["python3", "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "-q", NANNYML, "statsmodels"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"could not install nannyml: {done.stderr.strip()[-500:]}"
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"nannyml does not import: {done.stderr.strip()[-500:]}"
    return python, f"nannyml {done.stdout.strip()} in {VENV} (made now)"


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
    parser.add_argument("--scipy-baseline", action="store_true", help="skip NannyML")
    parser.add_argument(
        "--skip-no-stats",
        action="store_true",
        help="skip the PostgreSQL run before ANALYZE (minutes at 1M rows)",
    )
    parser.add_argument("--child-job", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-scipy", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="cProfile one job (SQLite)")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    if args.child_job:
        url, model_id = args.child_job
        print(json.dumps(job_child(url, int(model_id), args.profile)))
        return 0
    if args.child_scipy:
        print(json.dumps(scipy_child(Path(args.child_scipy))))
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
    python, why = (
        (None, "--scipy-baseline") if args.scipy_baseline else nannyml_python(create=not args.quick)
    )
    baseline_name = "NannyML calculate" if python else "scipy loop (Evidently's rule)"
    common.say(f"baseline: {baseline_name} ({why})")
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
                    f"{before_analyze['seconds']:.2f} s, of which labels "
                    f"{before_analyze['stages'].get('labels', 0.0):.2f} s "
                    f"(peak {before_analyze['peak_gb']:.2f} GB)"
                )
            p4.analyze(where.url)
            common.say("  PostgreSQL: ANALYZE run, as autovacuum would (off on this server)")
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], **{k: [] for k in urls}}
        for rep in range(reps):
            runs["baseline"].append(run_baseline_child(python, tmp))
            for label, where in stored.items():
                runs[label].append(run_job_child(where.url, where.model_id))
            common.say(
                f"  rep {rep + 1}: {baseline_name} {runs['baseline'][-1]['seconds']:.2f} s, "
                + ", ".join(
                    f"{k} job {runs[k][-1]['seconds']:.2f} s (peak {runs[k][-1]['peak_gb']:.2f} GB)"
                    for k in stored
                )
                + f" (load avg {os.getloadavg()[0]:.2f})"
            )
        base = [r["seconds"] for r in runs["baseline"]]
        for label in stored:
            secs = [r["seconds"] for r in runs[label]]
            stage_keys = runs[label][0]["stages"]
            out[label] = {
                "seconds": secs,
                "median": common.median(secs),
                "ratio": common.median([s / b for s, b in zip(secs, base, strict=True)]),
                "peak_gb": max(r["peak_gb"] for r in runs[label]),
                "rss_before_gb": common.median([r["rss_before_gb"] for r in runs[label]]),
                "stages": {
                    k: common.median([r["stages"].get(k, 0.0) for r in runs[label]])
                    for k in stage_keys
                },
                "peak_after": {
                    k: max(r["peak_after"].get(k, 0.0) for r in runs[label])
                    for k in runs[label][0]["peak_after"]
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
        "name": baseline_name,
        "why": why,
        "seconds": base,
        "median": common.median(base),
        "peak_gb": max(r["peak_gb"] for r in runs["baseline"]),
        "alerts": runs["baseline"][-1].get("alerts"),
        "fit_seconds": [r.get("fit_seconds") for r in runs["baseline"]],
    }
    common.say("")
    table = [[baseline_name, f"{baseline['median']:.2f}", f"{baseline['peak_gb']:.2f}", "-", "-"]]
    for label, r in out.items():
        ok = r["ratio"] <= GOAL_RATIO and r["peak_gb"] <= GOAL_PEAK_GB
        table.append(
            [
                f"{label}: Worker.analyse",
                f"{r['median']:.2f}",
                f"{r['peak_gb']:.2f}",
                f"{r['ratio']:.2f}",
                common.verdict(ok),
            ]
        )
    common.print_table(["run", "median s", "peak RSS GB", "ratio", "verdict"], table)
    for label, r in out.items():
        stages = r["stages"]
        common.say(
            f"{label} stages (median s): "
            + ", ".join(f"{k} {v:.3f}" for k, v in stages.items())
            + f"; rest (leases, commit, glue) {r['median'] - sum(stages.values()):.3f}; "
            f"RSS before analyse {r['rss_before_gb']:.2f} GB"
        )
        common.say(
            f"{label} peak RSS after each step (GB, max over runs): "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["peak_after"].items())
        )
        s = r["stored"]
        common.say(
            f"{label} stored runs {s['runs']}; fleet drifted {s['fleet_drifted']}; node-only "
            f"shift flagged on {s['node_shift_flagged']} of its (feature, shifted node) pairs; "
            f"clean (feature, node) pairs flagged {s['clean_node_pairs_flagged']}/"
            f"{s['clean_node_pairs']}"
        )
        if "profile" in r:
            common.say(f"{label} cProfile of one analyse (top by own time):\n{r['profile']}")
    common.say(
        f"baseline alerts (NannyML: raw, not normed Wasserstein at 0.1, so not comparable "
        f"with the job's verdicts): {baseline['alerts']}"
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
        f"{label} {r['ratio']:.2f}, peak {r['peak_gb']:.2f} GB" for label, r in out.items()
    )
    common.say(
        f"P5 ratio Worker.analyse / {baseline_name} = {figures}: {common.verdict(passed)} "
        f"(goals: ratio <= {GOAL_RATIO}, peak RSS <= {GOAL_PEAK_GB} GB)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
