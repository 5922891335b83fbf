"""P8: performance estimation + multivariate drift of a 1M-row window over 1,000 nodes, against
NannyML's fleet-only CBPE + data reconstruction drift on the same rows, in memory.

Data: NannyML's synthetic car-loan dataset (a binary classifier's predictions: 7 features,
``y_pred_proba``, ``y_pred``; labels ``repaid`` in the 50,000-row reference only). The window is
its analysis set resampled with replacement (seeded) to 1,000,000 rows, spread over 1,000 nodes
of Zipf-like sizes (``1 / rank^0.8``), each node at one of 20 sites and in one of two groups
(lines) per site: 1,061 scopes. Both sides get the same rows in memory, each in its own form:
NannyML's frame as NannyML takes it, ours window-shaped as the job loads it (``feature:<name>``,
text as categoricals, ``prediction``, ``proba:1``, ``node_id``).

Subject (ours): ``ReferenceProfile.build`` + ``Reconstruction.fit`` + ``Estimator.fit`` on the
reference, the window's scope keys (site, group, node, as the job builds them from node ids) and
one ``ScopeSet``, then ``estimate_performance`` (accuracy, precision, recall, F1, ROC AUC with
bands, no labels) and ``analyse_multivariate`` for the fleet and every site, group and node.

Baseline (NannyML 0.13.1, fleet only): ``CBPE(problem_type="classification_binary",
metrics=["roc_auc", "accuracy"], chunk_number=1)`` fit on the reference and estimate on the
window, plus ``DataReconstructionDriftCalculator(column_names=<the 7 features>,
chunk_number=1)`` fit + calculate.

Each side runs in a fresh process that imports its libraries and reads its Parquet files before
the timer starts (the baseline's process imports only pandas and nannyml); repetitions are
interleaved. Peak memory: the highest RSS during the timed work (``VmHWM`` reset at its start
through ``/proc/self/clear_refs``). Ratio = ours / NannyML's, median of the per-repetition
ratios; goal: ratio <= 1.0. The fleet figures of both sides are printed side by side (the same
rows give the same estimate and reconstruction error).

    .venv/bin/python bench/p8_estimation.py           # 1M rows, 1,000 nodes, 3 reps
    .venv/bin/python bench/p8_estimation.py --quick   # 50k rows, 100 nodes, 1 rep; < 30 s
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import common

GOAL_RATIO = 1.0
SITES = 20
LINES = 2
FEATURES = (
    "car_value",
    "salary_range",
    "debt_to_income_ratio",
    "loan_length",
    "repaid_loan_on_prev_car",
    "size_of_downpayment",
    "driver_tenure",
)
BASELINE = "NannyML CBPE + reconstruction drift, fit + estimate/calculate"

#: The baseline's process: pandas and nannyml only (its peak memory is NannyML's own).
NANNYML_CHILD = r"""
import json, os, sys, time, warnings
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
warnings.filterwarnings("ignore")
import pandas as pd
import nannyml as nml

def memory_gb(key="VmHWM"):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1e6

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True

reference = pd.read_parquet(sys.argv[1])
window = pd.read_parquet(sys.argv[2])
features = json.loads(sys.argv[3])
rss_before = memory_gb("VmRSS")
exact = reset_peak()
started = time.perf_counter()
cbpe = nml.CBPE(
    y_pred_proba="y_pred_proba",
    y_pred="y_pred",
    y_true="repaid",
    problem_type="classification_binary",
    metrics=["roc_auc", "accuracy"],
    chunk_number=1,
)
cbpe.fit(reference)
estimated = cbpe.estimate(window)
cbpe_seconds = time.perf_counter() - started
drift = nml.DataReconstructionDriftCalculator(column_names=features, chunk_number=1)
drift.fit(reference)
drifted = drift.calculate(window)
seconds = time.perf_counter() - started
estimate = estimated.filter(period="analysis").to_df()
error = drifted.filter(period="analysis").to_df()
print(json.dumps({
    "seconds": seconds,
    "cbpe_seconds": cbpe_seconds,
    "drift_seconds": seconds - cbpe_seconds,
    "peak_gb": memory_gb(),
    "peak_exact": exact,
    "rss_before_gb": rss_before,
    "accuracy": float(estimate[("accuracy", "value")].iloc[-1]),
    "roc_auc": float(estimate[("roc_auc", "value")].iloc[-1]),
    "reconstruction_error": float(error[("reconstruction_error", "value")].iloc[-1]),
    "nannyml": nml.__version__,
}))
"""


# --- data --------------------------------------------------------------------------------------


def node_sizes(rows: int, nodes: int) -> np.ndarray:
    """Rows per node, Zipf-like: ``1 / rank^0.8``, at least one each."""
    weights = 1.0 / np.arange(10, nodes + 10) ** 0.8
    sizes = np.maximum(np.floor(rows * weights / weights.sum()).astype(np.int64), 1)
    sizes[0] += rows - sizes.sum()
    return sizes


def car_loan() -> tuple[pd.DataFrame, pd.DataFrame]:
    """NannyML's car-loan reference and analysis sets, read from its package data as its
    loader reads them (``pandas.read_csv``), without importing NannyML into this process."""
    spec = importlib.util.find_spec("nannyml")
    assert spec is not None and spec.submodule_search_locations is not None
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    reference = pd.read_csv(data / "synthetic_car_loan_reference.csv")
    analysis = pd.read_csv(data / "synthetic_car_loan_analysis.csv")
    return reference, analysis


def window_shaped(frame: pd.DataFrame) -> pd.DataFrame:
    """NannyML's columns as a window holds them."""
    out = pd.DataFrame({f"feature:{name}": frame[name] for name in FEATURES})
    for column in out:
        if out[column].dtype == object:
            out[column] = out[column].astype("category")
    out["prediction"] = frame["y_pred"].astype(str).astype("category")
    out["proba:1"] = frame["y_pred_proba"].to_numpy(dtype=np.float64)
    if "repaid" in frame:
        out["label"] = frame["repaid"].astype(int).astype(str)
    return out


def write_data(directory: Path, rows: int, nodes: int) -> dict[str, Any]:
    """Both sides' reference and window as Parquet files; the window's layout."""
    reference, analysis = car_loan()
    rng = np.random.default_rng(8)
    window = analysis.iloc[rng.integers(0, len(analysis), rows)].reset_index(drop=True)
    node = np.repeat(np.arange(nodes, dtype=np.int64), node_sizes(rows, nodes))
    rng.shuffle(node)
    reference.to_parquet(directory / "nannyml_reference.parquet", index=False)
    window.drop(columns=["id", "timestamp"]).to_parquet(
        directory / "nannyml_window.parquet", index=False
    )
    window_shaped(reference).to_parquet(directory / "reference.parquet", index=False)
    shaped = window_shaped(window)
    shaped["node_id"] = node + 1
    shaped.to_parquet(directory / "window.parquet", index=False)
    return {"rows": rows, "nodes": nodes, "reference_rows": len(reference)}


# --- children ----------------------------------------------------------------------------------


def scope_keys(node_id: np.ndarray) -> dict[str, pd.Categorical]:
    """Site, group and node name per row, as the job builds them: a lookup per node, then
    codes per row."""
    codes, present = pd.factorize(node_id)
    index = present - 1
    site = np.array([f"site-{i % SITES:02d}" for i in index.tolist()], dtype=object)
    line = [(i // SITES) % LINES + 1 for i in index.tolist()]
    group = np.array([f"{s}/line-{n}" for s, n in zip(site, line, strict=True)], dtype=object)
    name = np.array([f"node-{i + 1:04d}" for i in index.tolist()], dtype=object)

    def per_row(per_node: np.ndarray) -> pd.Categorical:
        node_codes, labels = pd.factorize(per_node)
        return pd.Categorical.from_codes(node_codes[codes], categories=labels)

    return {"site": per_row(site), "group": per_row(group), "node": per_row(name)}


def ours_child(directory: Path) -> dict[str, Any]:
    """One cold run of ours in this (fresh) process."""
    from monitor.analysis import ReferenceProfile
    from monitor.analysis.estimation import Estimator, estimate_performance
    from monitor.analysis.multivariate import Reconstruction, analyse_multivariate
    from monitor.analysis.scopes import ScopeSet
    from p4_drift_job import memory_gb, reset_peak

    reference = pd.read_parquet(directory / "reference.parquet")
    window = pd.read_parquet(directory / "window.parquet")
    rss_before = memory_gb("VmRSS")
    exact = reset_peak()
    started = time.perf_counter()
    profile = ReferenceProfile.build(reference.drop(columns="label"))
    reconstruction = Reconstruction.fit(reference, profile)
    estimator = Estimator.fit(
        reference, task="classification", classes=["0", "1"], positive_class="1"
    )
    fitted = time.perf_counter()
    scopes = ScopeSet.build(len(window), scope_keys(window["node_id"].to_numpy()))
    scoped = time.perf_counter()
    estimated = estimate_performance(estimator, window, scopes, labels={})
    estimate_done = time.perf_counter()
    drift = analyse_multivariate(reconstruction, window, scopes)
    done = time.perf_counter()
    fleet, error = estimated.row(), drift.row()
    return {
        "seconds": done - started,
        "fit_seconds": fitted - started,
        "scopes_seconds": scoped - fitted,
        "estimate_seconds": estimate_done - scoped,
        "drift_seconds": done - estimate_done,
        "peak_gb": memory_gb(),
        "peak_exact": exact,
        "rss_before_gb": rss_before,
        "scopes": len(drift.rows),
        "accuracy": fleet.accuracy,
        "roc_auc": fleet.roc_auc,
        "reconstruction_error": error.reconstruction_error,
        "drifted_scopes": sum(bool(r.drifted) for r in drift.rows),
        "estimated_scopes": sum(r.accuracy is not None for r in estimated.rows),
    }


def _child_json(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_ours(directory: Path) -> dict[str, Any]:
    return _child_json([sys.executable, __file__, "--child", str(directory)])


def run_baseline(directory: Path) -> dict[str, Any]:
    return _child_json(
        [
            sys.executable,
            "-c",
            NANNYML_CHILD,
            str(directory / "nannyml_reference.parquet"),
            str(directory / "nannyml_window.parquet"),
            json.dumps(list(FEATURES)),
        ]
    )


def nannyml_problem() -> str | None:
    """Why NannyML cannot run in this environment, or None."""
    check = [sys.executable, "-c", "import nannyml, statsmodels"]
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        return f"nannyml does not import: {done.stderr.strip()[-500:]}"
    return None


# --- the run -----------------------------------------------------------------------------------


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="rows in the window")
    parser.add_argument("--nodes", type=int, help="nodes in the window")
    parser.add_argument("--reps", type=int, help="repetitions (interleaved, fresh processes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)


def summary(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {
        "seconds": [r["seconds"] for r in runs],
        "median": common.median([r["seconds"] for r in runs]),
        **{f"{k}_median": common.median([r[k] for r in runs]) for k in keys},
        "peak_gb": max(r["peak_gb"] for r in runs),
        "peak_exact": all(r["peak_exact"] for r in runs),
        "rss_before_gb": common.median([r["rss_before_gb"] for r in runs]),
        "last": runs[-1],
    }


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    if args.child:
        print(json.dumps(ours_child(Path(args.child))))
        return 0
    rows = args.rows or (50_000 if args.quick else 1_000_000)
    nodes = args.nodes or (100 if args.quick else 1_000)
    reps = args.reps or (1 if args.quick else 3)
    info = common.machine_info()
    common.say(f"P8 estimation + multivariate drift | {common.machine_line(info)}")
    problem = nannyml_problem()
    if problem is not None:
        common.say(f"baseline: {problem}; install nannyml==0.13.1 and statsmodels")
        return 1
    with common.scratch_dir("p8") as tmp:
        layout = write_data(tmp, rows, nodes)
        common.say(
            f"window: {rows:,} rows (NannyML's car-loan analysis set resampled), {nodes:,} nodes "
            f"of Zipf-like sizes at {SITES} sites, {LINES} groups each; reference "
            f"{layout['reference_rows']:,} labelled rows; 7 features; {reps} reps"
        )
        ours: list[dict[str, Any]] = []
        base: list[dict[str, Any]] = []
        for rep in range(reps):
            base.append(run_baseline(tmp))
            ours.append(run_ours(tmp))
            b, o = base[-1], ours[-1]
            common.say(
                f"  rep {rep + 1}: NannyML {b['seconds']:.2f} s (CBPE {b['cbpe_seconds']:.2f}, "
                f"reconstruction {b['drift_seconds']:.2f}; peak {b['peak_gb']:.2f} GB), ours "
                f"{o['seconds']:.2f} s (fit {o['fit_seconds']:.2f}, scopes "
                f"{o['scopes_seconds']:.2f}, estimate {o['estimate_seconds']:.2f}, "
                f"multivariate {o['drift_seconds']:.2f}; peak "
                f"{o['peak_gb']:.2f} GB) (load avg {os.getloadavg()[0]:.2f})"
            )
    ratios = [o["seconds"] / b["seconds"] for o, b in zip(ours, base, strict=True)]
    ratio = common.median(ratios)
    mine = summary(ours, ("fit_seconds", "scopes_seconds", "estimate_seconds", "drift_seconds"))
    theirs = summary(base, ("cbpe_seconds", "drift_seconds"))
    passed = ratio <= GOAL_RATIO
    common.say("")
    common.print_table(
        ["run", "median s", "peak RSS GB (timed work)", "ratio", f"ratio <= {GOAL_RATIO}"],
        [
            [
                f"{BASELINE} (fleet only; CBPE {theirs['cbpe_seconds_median']:.2f} + "
                f"reconstruction {theirs['drift_seconds_median']:.2f})",
                f"{theirs['median']:.2f}",
                f"{theirs['peak_gb']:.2f}",
                "-",
                "-",
            ],
            [
                f"ours: estimate_performance + analyse_multivariate, {mine['last']['scopes']:,} "
                f"scopes (fit {mine['fit_seconds_median']:.2f} + scopes "
                f"{mine['scopes_seconds_median']:.2f} + estimate "
                f"{mine['estimate_seconds_median']:.2f} + multivariate "
                f"{mine['drift_seconds_median']:.2f})",
                f"{mine['median']:.2f}",
                f"{mine['peak_gb']:.2f}",
                f"{ratio:.2f}",
                common.verdict(passed),
            ],
        ],
    )
    o, b = mine["last"], theirs["last"]
    common.say(
        f"\nfleet figures, ours / NannyML's: estimated accuracy {o['accuracy']:.4f} / "
        f"{b['accuracy']:.4f}, ROC AUC {o['roc_auc']:.4f} / {b['roc_auc']:.4f}, reconstruction "
        f"error {o['reconstruction_error']:.4f} / {b['reconstruction_error']:.4f}; ours: "
        f"{o['estimated_scopes']:,} scopes estimated, {o['drifted_scopes']:,} multivariate-drifted "
        "(the analysis set drifts in its second half, so every resampled scope holds drift)"
    )
    common.say(
        f"RSS with the frames read (before the timer): ours {mine['rss_before_gb']:.2f} GB, "
        f"NannyML {theirs['rss_before_gb']:.2f} GB; peaks "
        + ("since the timer started" if mine["peak_exact"] else "of the whole process")
    )
    path = common.write_results(
        "p8_estimation",
        args.quick,
        {
            "machine": info,
            "params": {**layout, "reps": reps, "sites": SITES, "lines": LINES},
            "baseline": {"name": BASELINE, "nannyml": b["nannyml"], **theirs},
            "ours": mine,
            "ratios": ratios,
            "ratio": ratio,
        },
    )
    common.say(f"results: {path}")
    common.say(
        f"P8 ours / {BASELINE} = {ratio:.2f}: {common.verdict(passed)} (goal: ratio <= "
        f"{GOAL_RATIO})"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
