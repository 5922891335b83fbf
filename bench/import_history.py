"""Import: rows/s of `edge-monitor import` (a 1M-row Parquet file, 6 features) into SQLite and
PostgreSQL, against the collector's in-process ingest of the same rows measured in the same run.

The collector's side is its storage path without HTTP: ``prepare_batch`` of the validated wire
records (dicts, built before the clock starts) and ``insert_batch``, in batches of one node's
500 records, as nodes send them, 20 batches per transaction. The import's side is the whole
command but the process start: file hash, reading, column mapping, checks, payloads, storage.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import common
from monitor.commands.imports import ImportOptions, import_history
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.records import count_records, insert_batch, prepare_batch

NODES = 12
DAYS = 7
COLLECTOR_BATCH = 500
BATCHES_PER_TRANSACTION = 20
GOAL_SQLITE_RPS = 100_000.0
GOAL_RATIO = 1.0
NUMERIC = ("temperature_c", "vibration_mm_s", "pressure_bar", "rpm", "current_a")


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="rows in the file (default 1,000,000)")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")


def history(n: int) -> pd.DataFrame:
    """``n`` rows of 12 nodes over a week: request id, 5 sensor readings and a machine type,
    a class with its two probabilities."""
    rng = np.random.default_rng(11)
    ts = (
        np.sort(rng.uniform(0.0, DAYS * 86_400.0, n)) + datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    )
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(np.round(ts, 3), unit="s", utc=True),
            "node": rng.choice([f"bench-node-{i:02d}" for i in range(NODES)], n),
            "request_id": [f"req-{i:09d}" for i in range(n)],
        }
    )
    for name, mean, sd, decimals in common.NUMERIC_FEATURES:
        if name in NUMERIC:
            frame[name] = np.round(rng.normal(mean, sd, n), decimals)
    frame["machine_type"] = rng.choice(["pump", "press", "lathe", "drill", "mill"], n)
    risk = np.round(rng.uniform(0.0, 1.0, n), 4)
    frame["prediction"] = np.where(risk > 0.5, "fail", "ok")
    frame["proba:fail"] = risk
    frame["proba:ok"] = np.round(1.0 - risk, 4)
    return frame


def wire_batches(frame: pd.DataFrame) -> list[tuple[str, list[dict[str, Any]]]]:
    """The same rows as validated wire records, in batches of one node's records."""
    features = [*NUMERIC, "machine_type"]
    ts = (frame["ts"].astype("int64") // 1_000).to_numpy() / 1_000_000
    columns = [frame[name].tolist() for name in features]
    rows: dict[str, list[dict[str, Any]]] = {}
    for i, (node, rid, prediction, fail, ok) in enumerate(
        zip(
            frame["node"].tolist(),
            frame["request_id"].tolist(),
            frame["prediction"].tolist(),
            frame["proba:fail"].tolist(),
            frame["proba:ok"].tolist(),
            strict=True,
        )
    ):
        rows.setdefault(node, []).append(
            {
                "id": common.new_id(int(ts[i] * 1000)),
                "request_id": rid,
                "ts": float(ts[i]),
                "features": {
                    name: column[i] for name, column in zip(features, columns, strict=True)
                },
                "prediction": prediction,
                "probabilities": {"fail": fail, "ok": ok},
            }
        )
    return [
        (node, records[start : start + COLLECTOR_BATCH])
        for node, records in rows.items()
        for start in range(0, len(records), COLLECTOR_BATCH)
    ]


def collector_ingest(url: str, batches: list[tuple[str, list[dict[str, Any]]]]) -> float:
    """Seconds the collector's storage path takes to store the batches."""
    engine = make_engine(url)
    try:
        with begin_write(engine) as conn:
            model_id = models.add_model(conn, common.MODEL).id
            version_id = models.version_id(conn, model_id, common.MODEL_VERSION)
            names = dict.fromkeys(name for name, _ in batches)
            node_ids = {name: nodes.add_node(conn, name)[0].id for name in names}
        started = time.perf_counter()
        for start in range(0, len(batches), BATCHES_PER_TRANSACTION):
            group = batches[start : start + BATCHES_PER_TRANSACTION]
            with begin_write(engine) as conn:
                for node, records in group:
                    insert_batch(
                        conn,
                        node_id=node_ids[node],
                        model_id=model_id,
                        model_version_id=version_id,
                        batch_uid=common.new_id(),
                        batch=prepare_batch(records),
                    )
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            stored = count_records(conn, model_id=model_id)
        assert stored == sum(len(r) for _, r in batches), stored
        return seconds
    finally:
        engine.dispose()


def run_import(url: str, path: Path, rows: int) -> tuple[float, float]:
    """Seconds of the first import and of a second one (which stores nothing)."""
    engine = make_engine(url)
    try:
        with begin_write(engine) as conn:
            models.add_model(conn, common.MODEL)
        options = ImportOptions(common.MODEL, common.MODEL_VERSION, node_column="node")
        first, summary = common.timed(lambda: import_history(engine, path, options))
        assert (summary.rows, summary.stored) == (rows, rows), summary.line()
        again, repeat = common.timed(lambda: import_history(engine, path, options))
        assert (repeat.stored, repeat.duplicates) == (0, rows), repeat.line()
        return first, again
    finally:
        engine.dispose()


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    n = args.rows or (50_000 if args.quick else 1_000_000)
    info = common.machine_info()
    common.say(f"Import of history | {common.machine_line(info)}")
    common.say(f"{n:,} rows x 6 features, {NODES} nodes over {DAYS} days, Parquet")
    pg_problem = "skipped (--skip-postgres)" if args.skip_postgres else common.postgres_problem()
    if pg_problem is None:
        info["postgresql"] = common.postgres_version()
    else:
        common.say(f"PostgreSQL: {pg_problem}")
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(common.scratch_dir("import"))
        frame = history(n)
        path = tmp / "history.parquet"
        frame.to_parquet(path)
        common.say(f"  file: {path.stat().st_size / 2**20:.1f} MiB")
        batches = wire_batches(frame)
        del frame
        backends = {"SQLite": (f"sqlite:///{tmp / 'import.db'}", f"sqlite:///{tmp / 'ingest.db'}")}
        if pg_problem is None:
            backends["PostgreSQL"] = (
                stack.enter_context(common.postgres_database("bench_import")),
                stack.enter_context(common.postgres_database("bench_ingest")),
            )
        for label, (import_url, ingest_url) in backends.items():
            for url in (import_url, ingest_url):
                common.migrate(url)
            imported, again = run_import(import_url, path, n)
            common.say(f"  {label}: import {imported:.1f} s, re-import {again:.1f} s")
            ingested = collector_ingest(ingest_url, batches)
            common.say(f"  {label}: collector ingest {ingested:.1f} s")
            results[label] = {
                "import_seconds": imported,
                "import_rps": n / imported,
                "reimport_rps": n / again,
                "collector_seconds": ingested,
                "collector_rps": n / ingested,
                "ratio": ingested / imported,
            }
    rows = []
    verdicts = []
    for label, r in results.items():
        ok = r["ratio"] >= GOAL_RATIO and (label != "SQLite" or r["import_rps"] >= GOAL_SQLITE_RPS)
        verdicts.append(ok)
        rows.append(
            [
                label,
                f"{r['import_rps']:,.0f}",
                f"{r['reimport_rps']:,.0f}",
                f"{r['collector_rps']:,.0f}",
                f"{r['ratio']:.2f}",
                common.verdict(ok),
            ]
        )
    common.say("")
    common.print_table(
        ["database", "import rows/s", "re-import rows/s", "collector rows/s", "ratio", "verdict"],
        rows,
    )
    passed = bool(verdicts) and all(verdicts) and pg_problem is None
    path = common.write_results(
        "import_history",
        args.quick,
        {
            "machine": info,
            "params": {"rows": n, "nodes": NODES, "days": DAYS, "batch": COLLECTOR_BATCH},
            "results": results,
            "postgres_problem": pg_problem,
            "passed": passed,
        },
    )
    common.say(f"\nresults: {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
