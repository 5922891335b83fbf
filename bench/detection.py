"""Detection: does the analysis job flag what the fleet simulator shifts, and only that?

For each scenario (``steady``, ``sensor-drift``, ``sudden-shift``) a fresh SQLite database gets
the demo model (version 1 in production with its reference), a fleet of nodes at 4 sites (two
groups per site), and several 15-minute windows of readings stored as the job tests store them
(``tests/jobs/fleetdata.py``: the fleet generator makes readings under the scenario, the real
ONNX model predicts them through the runtime, records go through prepare_batch + insert_batch;
one window is one simulated day). ``Worker.run_due`` analyses every window, and
the verdicts are read back from SQL (``results.drift`` / ``results.features``).

Truth, per (feature, node, window), from the scenario (onset a third of the way in):

* shifted: a feature the scenario moves (``Scenario.shifted_features``) on a node it affects,
  in a window where the change is complete (sensor drift ramps over a third of the run; a
  sudden shift is complete at the onset);
* clean: every pair before the onset, every pair of the steady fleet, and after the onset the
  nodes and features the scenario leaves alone -- except after a sudden shift, where the new
  machine mix also moves features the scenario does not list (load, operating hours): those
  pairs are neither (reported apart);
* ramping: shifted features on affected nodes while the sensor drift ramps in (neither).

Reported: the share of shifted pairs flagged (of those with a verdict), and false alarms per
1,000 clean pairs with a verdict (goal <= 10), with Evidently's own rule on the same pairs
for comparison.

    .venv/bin/python bench/detection.py           # 40 nodes, 12 windows, 400/node, 3 fleets
    .venv/bin/python bench/detection.py --quick   # 16 nodes, 6 windows, 250 readings/node
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import common

if str(common.REPO) not in sys.path:
    sys.path.insert(0, str(common.REPO))  # the fleet filler lives with the job tests

GOAL_FALSE_PER_1000 = 10.0
SCENARIOS = ("steady", "sensor-drift", "sudden-shift")
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def truth(plan: Any, node: Any, window: int, feature: str) -> str:
    """ "shifted", "clean", "ramping" or "moved-by-mix" for one (feature, node, window)."""
    onset = round(plan.onset_hour / 24)
    complete = round((plan.onset_hour + plan.ramp_hours) / 24)
    if plan.name == "steady" or window < onset:
        return "clean"
    if plan.name == "sudden-shift":
        return "shifted" if feature in plan.shifted_features() else "moved-by-mix"
    if plan.affects(node) and feature in plan.shifted_features():
        return "shifted" if window >= complete else "ramping"
    return "clean"


def run_scenario(
    name: str, url: str, n_nodes: int, n_windows: int, per_node: int, seed: int
) -> dict[str, Any]:
    from tests.jobs.fleetdata import WINDOW, register_demo_model, register_fleet, store_readings

    from monitor.fleet.scenarios import scenario
    from monitor.jobs.analysis import AnalysisConfig, Worker
    from monitor.storage import migrations, results
    from monitor.storage.engine import make_engine

    migrations.upgrade(url)
    engine = make_engine(url)
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, n_nodes, sites=4)
    sites = sorted({p.site for p in plans})
    plan = scenario(name, hours=24.0 * n_windows, sites=sites)
    started = time.perf_counter()
    for i in range(n_windows):
        start = T0 + i * WINDOW
        store_readings(
            engine, model_id, plans, plan, start, start + WINDOW, per_node, t0=T0, seed=seed
        )
    store_seconds = time.perf_counter() - started
    config = AnalysisConfig(window=WINDOW, grace=timedelta(minutes=1), lookback=timedelta(days=30))
    started = time.perf_counter()
    analysed = Worker(engine, config).run_due(now=T0 + n_windows * WINDOW + timedelta(minutes=5))
    analyse_seconds = time.perf_counter() - started
    by_name = {p.name: p for p in plans}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    per_feature: dict[str, Counter[str]] = defaultdict(Counter)
    scopes: dict[str, Counter[str]] = defaultdict(Counter)
    with engine.connect() as conn:
        runs = results.drift(conn, model_id)
        features = results.features(conn, "drift", [r.id for r in runs])
    for run in runs:
        window = int((run.window_start - T0) / WINDOW)
        for f in features[run.id]:
            if f.role != "feature":
                continue
            if run.scope_kind != "node":
                # Other scopes: a site/group/fleet pair is clean when none of its nodes moved.
                moved = any(
                    truth(plan, p, window, f.feature) != "clean"
                    for p in plans
                    if run.scope_kind == "fleet"
                    or (run.scope_kind == "site" and p.site == run.scope_key)
                    or (run.scope_kind == "group" and p.group == run.scope_key)
                )
                if not moved and f.drifted is not None:
                    scopes[run.scope_kind]["clean"] += 1
                    scopes[run.scope_kind]["clean_flagged"] += bool(f.drifted)
                continue
            kind = truth(plan, by_name[run.scope_key], window, f.feature)
            c = counts[kind]
            c["pairs"] += 1
            if f.drifted is None:
                c["no_verdict"] += 1
                continue
            c["judged"] += 1
            c["flagged"] += bool(f.drifted)
            c["evidently_flagged"] += bool(f.evidently_drifted)
            if kind == "shifted":
                per_feature[f.feature]["judged"] += 1
                per_feature[f.feature]["flagged"] += bool(f.drifted)
    engine.dispose()
    return {
        "scenario": name,
        "seed": seed,
        "windows_analysed": analysed,
        "store_seconds": store_seconds,
        "analyse_seconds": analyse_seconds,
        "counts": {k: dict(v) for k, v in counts.items()},
        "per_feature": {k: dict(v) for k, v in per_feature.items()},
        "other_scopes": {k: dict(v) for k, v in scopes.items()},
        "onset_window": round(plan.onset_hour / 24),
        "complete_window": round((plan.onset_hour + plan.ramp_hours) / 24),
        "affected_sites": sorted(plan.affected_sites),
    }


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, help="nodes (spread over 4 sites)")
    parser.add_argument("--windows", type=int, help="windows per scenario (a multiple of 3)")
    parser.add_argument("--per-node", type=int, help="readings per node per window")
    parser.add_argument("--seeds", type=int, help="independent fleets per scenario")


def merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's figures summed over its fleets (seeds)."""
    out = dict(runs[0])
    for key in ("windows_analysed", "store_seconds", "analyse_seconds"):
        out[key] = sum(r[key] for r in runs)
    for key in ("counts", "per_feature", "other_scopes"):
        total: dict[str, Counter[str]] = defaultdict(Counter)
        for r in runs:
            for k, v in r[key].items():
                total[k].update(v)
        out[key] = {k: dict(v) for k, v in total.items()}
    out["seeds"] = [r["seed"] for r in runs]
    return out


def _rate(c: dict[str, int], key: str = "flagged") -> float:
    return c.get(key, 0) / c["judged"] if c.get("judged") else float("nan")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    n_nodes = args.nodes or (16 if args.quick else 40)
    n_windows = args.windows or (6 if args.quick else 12)
    seeds = list(range(3, 3 + (args.seeds or (1 if args.quick else 3))))
    per_node = args.per_node or (250 if args.quick else 400)
    info = common.machine_info()
    common.say(f"Detection | {common.machine_line(info)}")
    common.say(
        f"{n_nodes} nodes at 4 sites (8 groups), {n_windows} windows per scenario (one simulated "
        f"day each), {per_node} readings per node per window, {len(seeds)} fleet(s) (seeds "
        f"{seeds}) per scenario; SQLite; Worker.run_due"
    )
    out = []
    with common.scratch_dir("detection") as tmp:
        for name in SCENARIOS:
            runs = []
            for seed in seeds:
                url = f"sqlite:///{tmp / f'{name}-{seed}.db'}"
                runs.append(run_scenario(name, url, n_nodes, n_windows, per_node, seed))
            r = merged(runs)
            out.append(r)
            common.say(
                f"  {name}: stored in {r['store_seconds']:.1f} s, {r['windows_analysed']} windows "
                f"analysed in {r['analyse_seconds']:.1f} s; onset window {r['onset_window']}, "
                f"complete from window {r['complete_window']}; affected sites "
                f"{r['affected_sites'] or 'all'}; pairs {r['counts']}"
            )
    common.say("")
    rows = []
    total_clean: Counter[str] = Counter()
    total_shifted: Counter[str] = Counter()
    for r in out:
        shifted = r["counts"].get("shifted", {})
        clean = r["counts"].get("clean", {})
        other = r["counts"].get("moved-by-mix", {})
        total_clean.update(clean)
        total_shifted.update(shifted)
        rows.append(
            [
                r["scenario"],
                f"{shifted.get('flagged', 0)}/{shifted.get('judged', 0)}"
                + (f" ({_rate(shifted):.1%})" if shifted.get("judged") else ""),
                f"{clean.get('flagged', 0)}/{clean.get('judged', 0)}",
                f"{1000 * _rate(clean):.2f}",
                f"{1000 * _rate(clean, 'evidently_flagged'):.1f}",
                f"{other.get('flagged', 0)}/{other.get('judged', 0)}" if other else "-",
            ]
        )
    false_per_1000 = 1000 * _rate(dict(total_clean))
    detected = _rate(dict(total_shifted))
    rows.append(
        [
            "all",
            f"{total_shifted['flagged']}/{total_shifted['judged']} ({detected:.1%})",
            f"{total_clean['flagged']}/{total_clean['judged']}",
            f"{false_per_1000:.2f}",
            f"{1000 * _rate(dict(total_clean), 'evidently_flagged'):.1f}",
            "-",
        ]
    )
    common.print_table(
        [
            "scenario",
            "shifted (feature, node) pairs flagged",
            "clean pairs flagged",
            "false alarms / 1,000 clean",
            "Evidently's rule / 1,000 clean",
            "unlisted features after the shift flagged",
        ],
        rows,
    )
    for r in out:
        if r["per_feature"]:
            common.say(
                f"{r['scenario']} per feature (flagged/judged): "
                + ", ".join(
                    f"{k} {v.get('flagged', 0)}/{v.get('judged', 0)}"
                    for k, v in sorted(r["per_feature"].items())
                )
            )
        common.say(
            f"{r['scenario']} clean pairs at other scopes (flagged/judged): "
            + ", ".join(
                f"{k} {v.get('clean_flagged', 0)}/{v.get('clean', 0)}"
                for k, v in sorted(r["other_scopes"].items())
            )
        )
    passed = false_per_1000 <= GOAL_FALSE_PER_1000
    path = common.write_results(
        "detection",
        args.quick,
        {
            "machine": info,
            "params": {
                "nodes": n_nodes,
                "windows": n_windows,
                "per_node": per_node,
                "seeds": seeds,
            },
            "results": out,
        },
    )
    common.say(f"results: {path}")
    common.say(
        f"Detection: {detected:.1%} of shifted (feature, node) pairs flagged; "
        f"{false_per_1000:.2f} false alarms per 1,000 clean pairs: "
        f"{common.verdict(passed)} (goal <= {GOAL_FALSE_PER_1000:g})"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
