"""P7: load a 1M-record window into a DataFrame from SQLite and PostgreSQL, against Parquet."""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import pstats
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import sqlalchemy as sa

import common
from monitor.storage import models
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.tables import batches
from monitor.storage.windows import load_window, load_window_table

BATCH = 500
GOAL_RATIO = 0.5
GOAL_RPS = 1_000_000.0
BATCHES_PER_TRANSACTION = 20


def fill(
    engines: dict[str, sa.Engine], n_records: int, n_nodes: int
) -> tuple[dict[str, dict[str, Any]], datetime, datetime]:
    """Write the same records into every database through prepare_batch + insert_batch.

    Returns per database its model id and fill time, and the window [start, end)."""
    synth = common.Synth(seed=7)
    names = [f"p7-node-{i:04d}" for i in range(n_nodes)]
    ids: dict[str, dict[str, Any]] = {}
    for label, engine in engines.items():
        url = engine.url.render_as_string(hide_password=False)
        fleet = common.register_fleet(url, names)
        with begin_write(engine) as conn:
            model_id = models.get_model(conn, common.MODEL).id
            version_id = models.version_id(conn, model_id, common.MODEL_VERSION)
        node_ids = [fleet[name][0] for name in names]
        ids[label] = {"model_id": model_id, "version_id": version_id, "nodes": node_ids}
        ids[label]["fill_seconds"] = 0.0
    n_batches = n_records // BATCH
    # One day of data ending an hour ago; each batch covers its own slice of time.
    end_ts = time.time() - 3600.0
    span = 24 * 3600.0
    step = span / n_records
    start_ts = end_ts - span
    pending: dict[str, list[Any]] = {label: [] for label in engines}
    generate_seconds = 0.0
    for b in range(n_batches):
        t0 = time.perf_counter()
        records = synth.records(BATCH, start_ts + b * BATCH * step, step)
        prepared = prepare_batch(records)
        generate_seconds += time.perf_counter() - t0
        for label in engines:
            pending[label].append((b % n_nodes, prepared))
        if len(pending[next(iter(engines))]) >= BATCHES_PER_TRANSACTION or b == n_batches - 1:
            for label, engine in engines.items():
                t0 = time.perf_counter()
                meta = ids[label]
                with begin_write(engine) as conn:
                    for node_index, batch in pending[label]:
                        insert_batch(
                            conn,
                            node_id=meta["nodes"][node_index],
                            model_id=meta["model_id"],
                            model_version_id=meta["version_id"],
                            batch_uid=common.new_id(),
                            batch=batch,
                        )
                meta["fill_seconds"] += time.perf_counter() - t0
                pending[label] = []
        if (b + 1) % 200 == 0:
            common.say(f"  filled {(b + 1) * BATCH:,} records")
    for meta in ids.values():
        meta["generate_seconds"] = generate_seconds
    start = datetime.fromtimestamp(start_ts, UTC) - timedelta(seconds=1)
    end = datetime.fromtimestamp(end_ts + BATCH * step, UTC) + timedelta(seconds=1)
    return ids, start, end


def load_db(engine: sa.Engine, model_id: int, start: datetime, end: datetime) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    with engine.connect() as conn:
        frame = load_window(conn, model_id, start, end)
    seconds = time.perf_counter() - t0
    n = len(frame)
    del frame
    return seconds, n


def load_parquet(path: Path) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    frame = pq.read_table(path).to_pandas(strings_to_categorical=True, self_destruct=True)
    seconds = time.perf_counter() - t0
    n = len(frame)
    del frame
    return seconds, n


def breakdown(engine: sa.Engine, model_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """Where one window load's time goes: the SQL fetch alone, Arrow decode, to_pandas; and a
    cProfile of load_window."""
    gc.collect()
    b = batches.c
    query = sa.select(b.id, b.node_id, b.model_version_id, b.payload).where(
        b.model_id == model_id, b.max_ts >= start, b.min_ts < end
    )
    with engine.connect() as conn:
        t0 = time.perf_counter()
        rows = conn.execute(query).all()
        fetch = time.perf_counter() - t0
        payload_bytes = sum(len(r.payload) for r in rows)
        del rows
        binary_fetch = None
        if engine.dialect.name == "postgresql":
            # The same rows over psycopg's binary protocol (bytea as is, not hex text).
            compiled = query.compile(dialect=engine.dialect)
            raw = conn.connection.driver_connection
            t0 = time.perf_counter()
            with raw.cursor(binary=True) as cur:
                cur.execute(str(compiled), compiled.params)
                cur.fetchall()
            binary_fetch = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = load_window_table(conn, model_id, start, end)
        table_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = table.to_pandas(strings_to_categorical=True, self_destruct=True)
    pandas_seconds = time.perf_counter() - t0
    del table, frame
    gc.collect()
    profiler = cProfile.Profile()
    with engine.connect() as conn:
        profiler.enable()
        frame = load_window(conn, model_id, start, end)
        profiler.disable()
    del frame
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    return {
        "sql_fetch_seconds": fetch,
        "sql_fetch_binary_seconds": binary_fetch,
        "decode_concat_seconds": table_seconds - fetch,
        "to_pandas_seconds": pandas_seconds,
        "payload_mib": payload_bytes / 2**20,
        "profile": text.getvalue(),
    }


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, help="records in the window (multiple of 500)")
    parser.add_argument("--reps", type=int, help="loads per source (interleaved)")
    parser.add_argument("--profile", action="store_true", help="print a profile even on PASS")
    parser.add_argument("--skip-postgres", action="store_true")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    n_records = args.records or (50_000 if args.quick else 1_000_000)
    n_nodes = 100 if args.quick else 1_000
    reps = args.reps or (3 if args.quick else 5)
    info = common.machine_info()
    common.say(f"P7 window load | {common.machine_line(info)}")
    common.say(
        f"{n_records:,} records x {len(common.FEATURE_NAMES)} features, {n_nodes} nodes, "
        f"batches of {BATCH}; {reps} loads per source"
    )
    pg_problem = "skipped (--skip-postgres)" if args.skip_postgres else common.postgres_problem()
    if pg_problem is None:
        info["postgresql"] = common.postgres_version()
    else:
        common.say(f"PostgreSQL: {pg_problem}")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(common.scratch_dir("p7"))
        urls = {"SQLite": f"sqlite:///{tmp / 'p7.db'}"}
        if pg_problem is None:
            urls["PostgreSQL"] = stack.enter_context(common.postgres_database("bench_p7"))
        for url in urls.values():
            common.migrate(url)
        engines = {label: make_engine(url) for label, url in urls.items()}
        ids, start, end = fill(engines, n_records, n_nodes)
        for label, meta in ids.items():
            common.say(
                f"  {label}: filled in {meta['fill_seconds']:.1f} s "
                f"({n_records / meta['fill_seconds']:,.0f} rec/s through insert_batch; "
                f"generating + prepare_batch {meta['generate_seconds']:.1f} s)"
            )
        # The baseline: the same records, as the SQLite window gives them, in one Parquet file.
        parquet = tmp / "window.parquet"
        with engines["SQLite"].connect() as conn:
            reference = load_window_table(conn, ids["SQLite"]["model_id"], start, end)
        pq.write_table(reference, parquet, compression="zstd")
        reference_rows, reference_columns = reference.num_rows, reference.num_columns
        del reference
        common.say(
            f"  Parquet (zstd): {parquet.stat().st_size / 2**20:.1f} MiB, "
            f"{reference_rows:,} rows x {reference_columns} columns"
        )
        runs: dict[str, list[tuple[float, int]]] = {"Parquet": [], **{k: [] for k in engines}}
        for rep in range(reps):
            runs["Parquet"].append(load_parquet(parquet))
            for label, engine in engines.items():
                runs[label].append(load_db(engine, ids[label]["model_id"], start, end))
            common.say(
                f"  rep {rep + 1}: "
                + ", ".join(f"{k} {v[-1][0]:.3f} s ({v[-1][1]:,} rows)" for k, v in runs.items())
            )
        results: dict[str, Any] = {}
        for label in engines:
            secs = [s for s, _ in runs[label]]
            ratios = [
                p / s for (p, _), (s, _) in zip(runs["Parquet"], runs[label], strict=True)
            ]  # rec/s ratio = parquet seconds / db seconds
            rows_ok = all(n == n_records for _, n in runs[label])
            results[label] = {
                "seconds": common.median(secs),
                "rps": n_records / common.median(secs),
                "ratio": common.median(ratios),
                "rows_ok": rows_ok,
                "fill_seconds": ids[label]["fill_seconds"],
                "runs": runs[label],
            }
        parquet_secs = common.median([s for s, _ in runs["Parquet"]])
        table_rows = [
            [
                "Parquet file (baseline)",
                f"{parquet_secs:.3f}",
                f"{n_records / parquet_secs:,.0f}",
                "-",
                "-",
            ]
        ]
        verdicts = {}
        for label, r in results.items():
            ok = r["ratio"] >= GOAL_RATIO and r["rps"] >= GOAL_RPS and r["rows_ok"]
            verdicts[label] = ok
            table_rows.append(
                [
                    f"{label} load_window",
                    f"{r['seconds']:.3f}",
                    f"{r['rps']:,.0f}",
                    f"{r['ratio']:.2f}",
                    common.verdict(ok),
                ]
            )
        common.say("")
        common.print_table(["source", "median s", "records/s", "ratio", "verdict"], table_rows)
        passed = bool(verdicts) and all(verdicts.values()) and pg_problem is None
        for label, engine in engines.items():
            if passed and not args.profile:
                break
            b = breakdown(engine, ids[label]["model_id"], start, end)
            results[label]["breakdown"] = b
            common.say(
                f"\n{label}: SQL fetch of {b['payload_mib']:.0f} MiB of payloads "
                f"{b['sql_fetch_seconds']:.3f} s"
                + (
                    f" (psycopg binary cursor: {b['sql_fetch_binary_seconds']:.3f} s)"
                    if b["sql_fetch_binary_seconds"] is not None
                    else ""
                )
                + ", Arrow decode + concat + cut "
                f"{b['decode_concat_seconds']:.3f} s, to_pandas {b['to_pandas_seconds']:.3f} s; "
                "cProfile of load_window:"
            )
            common.say(b["profile"])
        for engine in engines.values():
            engine.dispose()
    path = common.write_results(
        "p7_window_load",
        args.quick,
        {
            "machine": info,
            "params": {"records": n_records, "nodes": n_nodes, "batch": BATCH, "reps": reps},
            "parquet": {"seconds": parquet_secs, "runs": runs["Parquet"]},
            "results": results,
            "postgres_problem": pg_problem,
            "passed": passed,
        },
    )
    common.say(f"results: {path}")
    figures = "; ".join(
        f"{label} {r['ratio']:.2f} ({r['rps']:,.0f} rec/s)" for label, r in results.items()
    )
    common.say(
        f"P7 ratio load_window / Parquet = {figures}: {common.verdict(passed)} "
        f"(goals: ratio >= {GOAL_RATIO} and >= {GOAL_RPS:,.0f} rec/s on both)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
