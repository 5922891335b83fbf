"""Per-node recall with pooling: a Zipf-sized fleet where most nodes are small, analysed with
small nodes judged on this window alone (``pool_windows=1``, as before pooling) and on
consecutive windows pooled (the shipped ``analysis_pool_max_windows``, 12).

The window: 1,000,000 records from 1,000 nodes of Zipf-like sizes (``1 / (rank + 9)**zipf``,
``--zipf 1.2`` by default: 311 nodes under 200 rows, the smallest 128), P4's sensor features
(``p4_drift_job.columns``: 20 numbers, 5 categoricals, a class prediction with two
probabilities); 2 features (``vibration_mm_s``, ``operating_mode``: P4's ``NODE_SHIFT``) drift
on 20 nodes (every 50th from the 7th), nothing drifts fleet-wide. The nodes under
``analysis_min_rows`` (200) also have the ``--before`` preceding 15-minute windows (default 3)
with the same number of rows each, drawn the same way (a shifted node is shifted in them too:
its drift is older than its pooled span; ``--onset 1`` shifts only the window before the
analysed one). Written to SQLite through ``prepare_batch`` + ``insert_batch``.

Subject: ``Worker(engine, AnalysisConfig(pool_windows=...)).analyse(model, window)`` of the
last window, the lease deleted between runs. Reported per drifting feature: shifted nodes
flagged (of 20) and the sizes of those missed; per clean feature, the nodes flagged (false
nodes); goal (issue 13): >= 18 of 20 per drifting feature, <= 1 false node per clean feature.

    .venv/bin/python bench/pooled_detection.py            # 1M rows, 1,000 nodes
    .venv/bin/python bench/pooled_detection.py --quick    # 100k rows, 200 nodes
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from typing import Any

import numpy as np
import sqlalchemy as sa

import common
import p4_drift_job as p4
from monitor.jobs.windows import Window
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.records import insert_batch, prepare_batch

GOAL_RECALL = 18
GOAL_FALSE = 1
MIN_ROWS = 200
SHIFTED_EVERY = 50


def sizes(rows: int, n_nodes: int, zipf: float) -> np.ndarray:
    weights = 1.0 / np.arange(10, n_nodes + 10) ** zipf
    out = np.floor(rows * weights / weights.sum()).astype(np.int64)
    out[0] += rows - out.sum()
    return out


def register(engine: sa.Engine, names: list[str]) -> tuple[int, int, list[int]]:
    fleet = p4.Fleet(1, 1, sites=0, groups=1, shifted_every=SHIFTED_EVERY)
    reference = p4.reference_frame(fleet)
    buffer = io.BytesIO()
    reference.to_parquet(buffer, index=False)
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, common.MODEL).id
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
        node_ids = [nodes.add_node(conn, name)[0].id for name in names]
    return model_id, version_id, node_ids


def fill_window(
    engine: sa.Engine,
    ids: tuple[int, int, list[int]],
    window: Window,
    per_node: np.ndarray,
    shifted: set[int],
    seed: int,
) -> int:
    """``per_node[i]`` records of node ``i`` over the window (the shifted nodes moved by
    P4's ``NODE_SHIFT``), one batch of at most 500 records per node at a time."""
    model_id, version_id, node_ids = ids
    rng = np.random.default_rng(seed)
    node = np.repeat(np.arange(per_node.size), per_node)
    n = node.size
    if not n:
        return 0
    span = (window.end - window.start).total_seconds()
    ts = window.start.timestamp() + rng.uniform(0.0, span, n)
    cols = p4.columns(rng, n, {}, np.isin(node, sorted(shifted)))
    out = p4.predictions(rng, cols)
    names = list(cols)
    pending: list[Any] = []
    offsets = np.cumsum(per_node) - per_node  # rows are grouped by node (np.repeat)
    for index in np.flatnonzero(per_node).tolist():
        rows = np.arange(offsets[index], offsets[index] + per_node[index])
        for at in range(0, rows.size, p4.BATCH):
            chunk = rows[at : at + p4.BATCH]
            values = [cols[name][chunk].tolist() for name in names]
            records = [
                {
                    "id": common.new_id(),
                    "ts": t,
                    "features": dict(zip(names, row, strict=True)),
                    "prediction": p,
                    "probabilities": {"ok": ok, "fail": fail},
                }
                for row, t, p, ok, fail in zip(
                    zip(*values, strict=True),
                    ts[chunk].tolist(),
                    out["prediction"][chunk].tolist(),
                    out["proba_ok"][chunk].tolist(),
                    out["proba_fail"][chunk].tolist(),
                    strict=True,
                )
            ]
            pending.append((node_ids[index], prepare_batch(records)))
        if len(pending) >= p4.BATCHES_PER_TRANSACTION:
            _flush(engine, model_id, version_id, pending)
    _flush(engine, model_id, version_id, pending)
    return n


def _flush(engine: sa.Engine, model_id: int, version_id: int, pending: list[Any]) -> None:
    with begin_write(engine) as conn:
        for node_id, batch in pending:
            insert_batch(
                conn,
                node_id=node_id,
                model_id=model_id,
                model_version_id=version_id,
                batch_uid=None,
                batch=batch,
            )
    pending.clear()


def judge(engine: sa.Engine, model_id: int, pool_windows: int) -> tuple[float, Any]:
    from monitor.jobs.analysis import AnalysisConfig, Worker
    from monitor.storage import results

    logging.getLogger("monitor.jobs.analysis").setLevel(logging.ERROR)
    p4.reset_lease(engine, model_id, p4.WINDOW)
    worker = Worker(engine, AnalysisConfig(pool_windows=pool_windows))
    with engine.connect() as conn:
        model = models.get_model(conn, common.MODEL)
    started = time.perf_counter()
    if not worker.analyse(model, p4.WINDOW):
        raise RuntimeError("the worker did not get the window's lease")
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        stored = results.window(conn, model_id, p4.WINDOW.start)
    return seconds, stored


def rates(stored: Any, names: list[str], node_sizes: np.ndarray, shifted: set[int]) -> dict:
    from monitor.schema import FEATURE

    index = {name: i for i, name in enumerate(names)}
    flagged: dict[str, set[int]] = {}
    judged: dict[str, set[int]] = {}
    pooled = 0
    for scope in stored.drift:
        if scope.scope_kind != "node":
            continue
        pooled += scope.span_start is not None
        node = index[scope.scope_key]
        for f in stored.drift_features.get(scope.id, []):
            if f.role != FEATURE:
                continue
            if f.drifted is not None:
                judged.setdefault(f.feature, set()).add(node)
            if f.drifted:
                flagged.setdefault(f.feature, set()).add(node)
    out: dict[str, Any] = {"pooled_nodes": pooled, "recall": {}, "false": {}}
    for feature in p4.NODE_SHIFT:
        hit = flagged.get(feature, set()) & shifted
        missed = sorted(shifted - hit)
        out["recall"][feature] = {
            "flagged": len(hit),
            "of": len(shifted),
            "missed_sizes": [int(node_sizes[i]) for i in missed],
            "judged": len(judged.get(feature, set()) & shifted),
        }
    for feature in common.FEATURE_NAMES:
        wrong = flagged.get(feature, set()) - (shifted if feature in p4.NODE_SHIFT else set())
        out["false"][feature] = len(wrong)
    return out


def main() -> int:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rows", type=int, help="records in the analysed window")
        parser.add_argument("--nodes", type=int)
        parser.add_argument("--zipf", type=float, default=1.2)
        parser.add_argument("--before", type=int, default=3, help="earlier windows of small nodes")
        parser.add_argument(
            "--onset", type=int, help="earlier windows in which shifted nodes are shifted"
        )
        parser.add_argument("--seed", type=int, default=11)

    args = common.parse_args(__doc__ or "", extra)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    n_nodes = args.nodes or (200 if args.quick else 1_000)
    onset = args.before if args.onset is None else args.onset
    per_node = sizes(rows, n_nodes, args.zipf)
    shifted = set(range(6, n_nodes, SHIFTED_EVERY if n_nodes >= 1_000 else n_nodes // 20))
    shifted = set(sorted(shifted)[:20])
    small = per_node < MIN_ROWS
    names = [f"bench-node-{i:04d}" for i in range(n_nodes)]
    info = common.machine_info()
    common.say(f"pooled detection | {common.machine_line(info)}")
    common.say(
        f"window: {rows:,} records, {n_nodes:,} nodes (Zipf {args.zipf}: {int(small.sum())} under "
        f"{MIN_ROWS} rows, smallest {int(per_node.min())}); {len(shifted)} shifted nodes "
        f"({sum(bool(small[i]) for i in shifted)} of them small); small nodes also in the "
        f"{args.before} windows before (shifted nodes shifted in the last {onset} of them)"
    )
    results_out: dict[str, Any] = {}
    with common.scratch_dir("pooled") as tmp:
        url = f"sqlite:///{tmp / 'pooled.db'}"
        common.migrate(url)
        engine = make_engine(url)
        ids = register(engine, names)
        started = time.perf_counter()
        filled = fill_window(engine, ids, p4.WINDOW, per_node, shifted, args.seed)
        size = p4.WINDOW.end - p4.WINDOW.start
        for back in range(1, args.before + 1):
            earlier = Window(p4.WINDOW.start - back * size, p4.WINDOW.end - back * size)
            moved = shifted if back <= onset else set()
            filled += fill_window(
                engine, ids, earlier, np.where(small, per_node, 0), moved, args.seed + back
            )
        common.say(f"filled {filled:,} records in {time.perf_counter() - started:.0f} s")
        for label, pool_windows in (("window alone", 1), ("pooled (12 windows)", 12)):
            seconds, stored = judge(engine, ids[0], pool_windows)
            found = rates(stored, names, per_node, shifted)
            found["seconds"] = seconds
            results_out[label] = found
            recall = "; ".join(
                f"{feature} {r['flagged']}/{r['of']} (judged {r['judged']}, missed sizes "
                f"{r['missed_sizes']})"
                for feature, r in found["recall"].items()
            )
            worst = max(found["false"].values())
            common.say(
                f"{label}: Worker.analyse {seconds:.2f} s, {found['pooled_nodes']} nodes pooled; "
                f"recall {recall}; false nodes per feature: max {worst}, total "
                f"{sum(found['false'].values())} "
                f"({ {k: v for k, v in found['false'].items() if v} })"
            )
        engine.dispose()
    pooled = results_out["pooled (12 windows)"]
    passed = all(r["flagged"] >= GOAL_RECALL for r in pooled["recall"].values()) and (
        max(pooled["false"].values()) <= GOAL_FALSE
    )
    path = common.write_results(
        "pooled_detection",
        args.quick,
        {
            "machine": info,
            "params": {
                "rows": rows,
                "nodes": n_nodes,
                "zipf": args.zipf,
                "before": args.before,
                "onset": onset,
                "seed": args.seed,
            },
            "results": results_out,
        },
    )
    common.say(f"results: {path}")
    common.say(
        f"pooled detection: >= {GOAL_RECALL} of 20 per drifting feature and <= {GOAL_FALSE} "
        f"false node per clean feature: {common.verdict(passed)}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
