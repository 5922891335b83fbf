"""P3: records/s through HTTP into SQLite and PostgreSQL, against plain Core executemany."""

from __future__ import annotations

import argparse
import cProfile
import gzip
import http.client
import io
import json
import pstats
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

import common
from monitor import wire

BATCH = 500
SENDERS = 4
GOAL_RATIO = 0.5
GOAL_SQLITE_RPS = 10_000.0

plain_metadata = sa.MetaData()
# The baseline: one plain row per record, no deduplication, no columnar payload.
plain_records = sa.Table(
    "bench_plain_records",
    plain_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("node_id", sa.Integer, nullable=False),
    sa.Column("uid", sa.String(128), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("prediction", sa.Text, nullable=False),
    sa.Column("probabilities", sa.Text),
    sa.Column("latency_ms", sa.Float),
)


@dataclass
class Workload:
    """One repetition's data: gzip bodies per sender and the same records as plain rows."""

    bodies: list[list[bytes]]  # per sender
    rows: list[dict[str, Any]]
    records: int


def build_workload(synth: common.Synth, fleet: list[tuple[int, str]], per_sender: int) -> Workload:
    bodies: list[list[bytes]] = [[] for _ in fleet]
    rows: list[dict[str, Any]] = []
    now = time.time()
    for s, (node_id, _token) in enumerate(fleet):
        for _ in range(per_sender):
            records = synth.records(BATCH, now - 3600.0, 0.005)
            body = wire.records_body(common.new_id(), common.MODEL, common.MODEL_VERSION, records)
            bodies[s].append(gzip.compress(orjson.dumps(body), compresslevel=6, mtime=0))
            for r in records:
                rows.append(
                    {
                        "node_id": node_id,
                        "uid": r["id"],
                        "ts": datetime.fromtimestamp(r["ts"], UTC),
                        "request_id": r.get("request_id", r["id"]),
                        "features": json.dumps(r["features"]),
                        "prediction": r["prediction"],
                        "probabilities": json.dumps(r["probabilities"]),
                        "latency_ms": r["latency_ms"],
                    }
                )
    return Workload(bodies, rows, len(rows))


# --- the subject: 4 keep-alive senders against the collector process -------------------------


@dataclass
class SenderResult:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    retries: int = 0
    server_errors: int = 0  # 5xx answers (retried, as the SDK does)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def post_all(
    port: int, token: str, bodies: list[bytes], start: threading.Barrier, out: SenderResult
) -> None:
    """POST each body on one keep-alive connection; retry as the SDK would (5xx, 429, resets)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    start.wait()
    try:
        for body in bodies:
            for _attempt in range(20):
                t0 = time.perf_counter()
                try:
                    conn.request("POST", wire.RECORDS_PATH, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    out.retries += 1
                    out.errors.append(f"connection: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    time.sleep(0.05)
                    continue
                out.latencies.append(time.perf_counter() - t0)
                if resp.status >= 500 or resp.status in wire.RETRYABLE_STATUSES:
                    out.retries += 1
                    if resp.status >= 500:
                        out.server_errors += 1
                        out.errors.append(f"{resp.status}: {data[:120]!r}")
                    time.sleep(0.05)
                    continue
                if resp.status != 200:
                    out.errors.append(f"{resp.status}: {data[:200]!r}")
                    break
                answer = json.loads(data)
                out.accepted += answer["accepted"]
                out.duplicate += answer["duplicate"]
                out.rejected += len(answer["rejected"])
                break
            else:
                out.errors.append("gave up after 20 attempts")
    finally:
        conn.close()


def run_http(port: int, fleet: list[tuple[int, str]], work: Workload) -> dict[str, Any]:
    barrier = threading.Barrier(len(fleet) + 1)
    results = [SenderResult() for _ in fleet]
    threads = [
        threading.Thread(target=post_all, args=(port, token, work.bodies[i], barrier, results[i]))
        for i, (_node_id, token) in enumerate(fleet)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    latencies = [x for r in results for x in r.latencies]
    return {
        "seconds": seconds,
        "records": work.records,
        "rps": work.records / seconds,
        "accepted": sum(r.accepted for r in results),
        "duplicate": sum(r.duplicate for r in results),
        "rejected": sum(r.rejected for r in results),
        "retries": sum(r.retries for r in results),
        "server_errors": sum(r.server_errors for r in results),
        "errors": [e for r in results for e in r.errors],
        "batch_p50_ms": common.percentile(latencies, 50) * 1000,
        "batch_p99_ms": common.percentile(latencies, 99) * 1000,
    }


# --- the baseline: plain executemany ----------------------------------------------------------


def plain_engine(url: str) -> sa.Engine:
    from monitor.storage.engine import make_engine

    if url.startswith("sqlite"):
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # The collector's settings, so both sides pay for the same durability.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return make_engine(url)  # only for the psycopg 3 driver name


def run_plain(engine: sa.Engine, work: Workload) -> dict[str, Any]:
    rows = work.rows
    t0 = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        with engine.begin() as conn:
            conn.execute(plain_records.insert(), rows[i : i + BATCH])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "records": len(rows), "rps": len(rows) / seconds}


# --- in-process profile of the collector's ingest path ---------------------------------------


def profile_ingest(url: str, token: str, bodies: list[bytes]) -> dict[str, Any]:
    """The collector's per-request work without HTTP, stage by stage, and a cProfile of it."""
    from monitor.collector import validation
    from monitor.collector.body import gunzip, parse_json
    from monitor.storage import models
    from monitor.storage.engine import begin_write, make_engine
    from monitor.storage.nodes import node_for_token, touch_node
    from monitor.storage.records import insert_batch, prepare_batch

    engine = make_engine(url)
    stages: dict[str, float] = {}
    statements: dict[str, float] = {}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        words = stmt.split()
        kind = " ".join(words[:3]) if words[0] in ("INSERT", "UPDATE") else words[0]
        kind = "  SQL " + kind.replace("SELECT", "SELECT (any)")
        statements[kind] = statements.get(kind, 0.0) + time.perf_counter() - conn.info["bench_t0"]

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0
        return result

    def one(body: bytes) -> None:
        def auth() -> Any:
            with engine.connect() as conn:
                return node_for_token(conn, token)

        node = stage("authenticate", auth)
        raw = stage("gunzip", lambda: gunzip(body, wire.MAX_DECODED_BYTES))
        parsed = stage("parse JSON", lambda: parse_json(raw))
        batch = stage("validate", lambda: validation.records_batch(parsed))
        prepared = stage("prepare_batch (Arrow)", lambda: prepare_batch(batch.records))

        def write() -> None:
            nonlocal before_commit
            with begin_write(engine) as conn:
                model_id = models.get_model(conn, batch.model).id
                version = models.version_id(conn, model_id, batch.model_version)
                insert_batch(
                    conn,
                    node_id=node.id,
                    model_id=model_id,
                    model_version_id=version,
                    batch_uid=batch.batch_id,
                    batch=prepared,
                )
                touch_node(conn, node.id)
                before_commit = time.perf_counter()
            stages["  commit"] = stages.get("  commit", 0.0) + time.perf_counter() - before_commit

        stage("insert_batch + commit", write)

    before_commit = 0.0

    one(bodies[0])  # warm: imports, connections, caches
    half = (len(bodies) + 1) // 2
    timed_bodies, profiled_bodies = bodies[1:half], bodies[half:]
    stages.clear()
    statements.clear()
    t0 = time.perf_counter()
    for body in timed_bodies:  # stage times without the profiler's overhead
        one(body)
    seconds = time.perf_counter() - t0
    commit = stages.pop("  commit", 0.0)
    stage_seconds = {**stages, **dict(sorted(statements.items())), "  commit": commit}
    profiler = cProfile.Profile()
    profiler.enable()
    for body in profiled_bodies:
        one(body)
    profiler.disable()
    engine.dispose()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    n = len(timed_bodies) * BATCH
    return {
        "records": n,
        "rps_single_thread": n / seconds,
        "stage_us_per_record": {k: v / n * 1e6 for k, v in stage_seconds.items()},
        "profile": text.getvalue(),
    }


# --- one database -----------------------------------------------------------------------------


def run_database(
    label: str,
    url: str,
    tmp: Path,
    per_sender: int,
    reps: int,
    profile: bool,
    workers: int = 1,
) -> dict[str, Any]:
    common.migrate(url)
    names = [f"{label}-sender-{i}" for i in range(SENDERS)]
    fleet = list(common.register_fleet(url, names).values())
    engine = plain_engine(url)
    plain_metadata.create_all(engine)
    synth = common.Synth(seed=3)
    runs: list[dict[str, Any]] = []
    sent = 0
    log = tmp / f"collector-{label}.log"
    with common.CollectorProcess(url, log, workers=workers) as collector:
        # The first requests open connections, fill caches and create the model version.
        warm = build_workload(synth, fleet, 1)
        warm_http = run_http(collector.port, fleet, warm)
        run_plain(engine, warm)
        sent += warm.records
        if warm_http["errors"]:
            common.say(f"  {label} warm-up: errors (retried): {warm_http['errors']}")
        for rep in range(reps):
            work = build_workload(synth, fleet, per_sender)
            base = run_plain(engine, work)
            subj = run_http(collector.port, fleet, work)
            sent += work.records
            runs.append({"http": subj, "plain": base, "ratio": subj["rps"] / base["rps"]})
            common.say(
                f"  {label} rep {rep + 1}: collector {subj['rps']:,.0f} rec/s "
                f"(batch p50 {subj['batch_p50_ms']:.0f} ms, p99 {subj['batch_p99_ms']:.0f} ms, "
                f"retries {subj['retries']}), plain executemany {base['rps']:,.0f} rec/s, "
                f"ratio {subj['rps'] / base['rps']:.2f}"
            )
        # Exactly once: a retried body is answered as duplicates and stores nothing new.
        replay = run_http(collector.port, fleet, Workload([b[:1] for b in work.bodies], [], 0))
    from monitor.storage.records import count_records

    with engine.connect() as conn:
        stored = count_records(conn)
    accepted = sum(r["http"]["accepted"] for r in runs) + warm_http["accepted"]
    errors = warm_http["errors"] + [e for r in runs for e in r["http"]["errors"]]
    server_errors = warm_http["server_errors"] + sum(r["http"]["server_errors"] for r in runs)
    exactly_once = (
        stored == sent == accepted
        and replay["duplicate"] == SENDERS * BATCH
        and replay["accepted"] == 0
    )
    common.say(
        f"  {label}: sent {sent:,}, accepted {accepted:,}, stored {stored:,}; replayed "
        f"{SENDERS} bodies -> {replay['duplicate']:,} duplicates, {replay['accepted']} accepted; "
        f"exactly once: {exactly_once}"
    )
    result: dict[str, Any] = {
        "runs": runs,
        "rps": common.median([r["http"]["rps"] for r in runs]),
        "plain_rps": common.median([r["plain"]["rps"] for r in runs]),
        "ratio": common.median([r["ratio"] for r in runs]),
        "sent": sent,
        "stored": stored,
        "exactly_once": exactly_once,
        "server_errors": server_errors,
        "errors": errors[:10],
    }
    if profile:
        prof_work = build_workload(synth, fleet, max(5, per_sender // 2))
        result["ingest_profile"] = profile_ingest(url, fleet[0][1], prof_work.bodies[0])
    engine.dispose()
    return result


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bodies", type=int, help="bodies of 500 records per sender and rep")
    parser.add_argument("--reps", type=int, help="repetitions (baseline and subject interleaved)")
    parser.add_argument(
        "--profile", action="store_true", help="profile the ingest path even if goals are met"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--collector-workers", type=int, default=1, help="collector processes (serve --workers)"
    )


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    per_sender = args.bodies or (3 if args.quick else 50)
    reps = args.reps or (1 if args.quick else 3)
    info = common.machine_info()
    common.say(f"P3 ingest | {common.machine_line(info)}")
    common.say(
        f"{SENDERS} senders x {per_sender} gzip bodies x {BATCH} records per rep, {reps} reps"
    )
    pg_problem = "skipped (--skip-postgres)" if args.skip_postgres else common.postgres_problem()
    if pg_problem is None:
        info["postgresql"] = common.postgres_version()
    info["collector_workers"] = args.collector_workers
    common.say(f"collector processes: {args.collector_workers}")
    # Profiled in every full run (printed when a goal is missed); in quick mode on request.
    profile = args.profile or not args.quick
    results: dict[str, Any] = {}
    with common.scratch_dir("p3") as tmp:
        workers = args.collector_workers
        results["SQLite"] = run_database(
            "sqlite", f"sqlite:///{tmp / 'p3.db'}", tmp, per_sender, reps, profile, workers
        )
        if pg_problem is None:
            with common.postgres_database("bench_p3") as url:
                results["PostgreSQL"] = run_database(
                    "postgres", url, tmp, per_sender, reps, profile, workers
                )
        else:
            common.say(f"PostgreSQL: {pg_problem}")
    rows = []
    verdicts = {}
    for db, r in results.items():
        ok = r["ratio"] >= GOAL_RATIO and r["exactly_once"]
        if db == "SQLite":
            ok = ok and r["rps"] >= GOAL_SQLITE_RPS
        verdicts[db] = ok
        rows.append(
            [
                db,
                f"{r['rps']:,.0f}",
                f"{r['plain_rps']:,.0f}",
                f"{r['ratio']:.2f}",
                "yes" if r["exactly_once"] else "NO",
                r["server_errors"],
                common.verdict(ok),
            ]
        )
    common.say("")
    common.print_table(
        [
            "database",
            "HTTP rec/s",
            "plain executemany rec/s",
            "ratio",
            "exactly once",
            "5xx (retried)",
            "verdict",
        ],
        rows,
    )
    passed = bool(verdicts) and all(verdicts.values()) and pg_problem is None
    if not passed or args.profile:
        for db, r in results.items():
            prof = r.get("ingest_profile")
            if prof is None:
                common.say(f"\n{db}: no profile (rerun with --profile)")
                continue
            common.say(
                f"\n{db}: collector ingest path in-process, one thread, no HTTP: "
                f"{prof['rps_single_thread']:,.0f} rec/s; us per record by stage "
                "(without the profiler), then the cProfile of more batches:"
            )
            for stage, us in prof["stage_us_per_record"].items():
                common.say(f"  {stage:28} {us:7.2f}")
            common.say(prof["profile"])
    path = common.write_results(
        "p3_ingest",
        args.quick,
        {
            "machine": info,
            "params": {"senders": SENDERS, "batch": BATCH, "bodies": per_sender, "reps": reps},
            "results": results,
            "postgres_problem": pg_problem,
            "passed": passed,
        },
    )
    common.say(f"results: {path}")
    figures = "; ".join(
        f"{db} {r['ratio']:.2f} ({r['rps']:,.0f} rec/s)" for db, r in results.items()
    )
    common.say(
        f"P3 ratio HTTP ingest / plain executemany = {figures}: {common.verdict(passed)} "
        f"(goals: ratio >= {GOAL_RATIO} on each, >= {GOAL_SQLITE_RPS:,.0f} rec/s into SQLite, "
        "stored exactly once)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
