"""Fuzz: hostile bodies against a collector process (SQLite and PostgreSQL), counted by status.

The long form of tests/collector/test_fuzz.py: the same hypothesis-generated bodies (JSON trees
where fields belong, NUL and lone surrogates, huge, tiny and non-finite numbers, nesting
thousands deep, wrong types, missing fields, raw bytes, gzip garbage) go to /v1/records,
/v1/labels and /v1/heartbeats of ``edge-monitor serve``, 200,000 by default (half per database),
with a good record of the same node after every one. Goal: no 5xx at all, every 4xx in the
error envelope, every good record stored. Also prints what the parser costs on hostile bodies
(NaN, numbers beyond float64, deep nesting) as a ratio to a valid body of the same size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

import common

if str(common.REPO) not in sys.path:
    sys.path.insert(0, str(common.REPO))  # the generated bodies live with the collector tests

#: Hypothesis examples per run of the engine: a fresh seed for each chunk keeps its memory of
#: what it generated small.
CHUNK = 2_000


def fuzz_database(label: str, url: str, bodies: int, seed: int, log: Any) -> dict[str, Any]:
    from tests.collector.test_fuzz import Fuzzer, run_fuzzer

    from monitor.storage.engine import make_engine
    from monitor.storage.records import count_records

    common.migrate(url)
    (_node_id, token) = common.register_fleet(url, [f"{label}-fuzzer"])[f"{label}-fuzzer"]
    # The fuzzer sends as fast as it can, which the per-node rate limit would answer with 429.
    os.environ["MONITOR_RATE_LIMIT_PER_SECOND"] = "0"
    started = time.perf_counter()
    with (
        common.CollectorProcess(url, log) as collector,
        httpx.Client(base_url=collector.url, timeout=120) as http,
    ):
        fuzzer = Fuzzer(http, token, model=common.MODEL)
        chunk = 0
        while fuzzer.bodies < bodies:
            run_fuzzer(fuzzer, min(CHUNK, bodies - fuzzer.bodies), seed=seed + chunk)
            chunk += 1
            common.say(
                f"  {label}: {fuzzer.bodies:,} hostile bodies, {fuzzer.hostile:,} hostile values, "
                f"{fuzzer.requests:,} requests, {time.perf_counter() - started:,.0f} s"
            )
    seconds = time.perf_counter() - started
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = count_records(conn)
    engine.dispose()
    return {
        "bodies": fuzzer.bodies,
        "hostile_values": fuzzer.hostile,
        "requests": fuzzer.requests,
        "seconds": seconds,
        "statuses": dict(sorted(fuzzer.statuses.items())),
        "codes": dict(sorted(fuzzer.codes.items(), key=lambda kv: -kv[1])),
        "rejections": dict(sorted(fuzzer.rejections.items(), key=lambda kv: -kv[1])),
        "accepted": fuzzer.accepted,
        "stored": stored,
        "server_errors": sum(n for status, n in fuzzer.statuses.items() if status >= 500),
    }


def parse_costs(size: int) -> list[dict[str, Any]]:
    """Seconds ``parse_json`` takes on hostile bodies of ``size`` bytes, against a valid one."""
    from monitor.collector.body import parse_json
    from monitor.errors import MonitorError

    def numbers(token: bytes) -> bytes:
        return b'{"ts": 1, "sdk": {"values": [' + b",".join([token] * (size // 4)) + b"]}}"

    depth = size // 2
    cases = {
        "valid numbers (baseline)": numbers(b"1.5"),
        "NaN": numbers(b"NaN"),
        "10**400 then numbers": b'{"n": ' + b"1" * 401 + b", " + numbers(b"1.5")[1:],
        f"nested {depth:,} deep": b"[" * depth + b"]" * depth,
        "NUL in the last string": numbers(b'"x"')[:-3] + b', "\\u0000"]}}',
    }
    rows = []
    for name, raw in cases.items():
        best = float("inf")
        outcome = "parsed"
        for _ in range(5):
            t0 = time.perf_counter()
            try:
                parse_json(raw)
            except MonitorError as exc:
                outcome = f"{exc.status} {exc.code}"
            best = min(best, time.perf_counter() - t0)
        rows.append({"body": name, "bytes": len(raw), "seconds": best, "outcome": outcome})
    base = rows[0]["seconds"]
    for row in rows:
        row["ratio"] = row["seconds"] / base
    return rows


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bodies", type=int, help="hostile bodies in all (half per database)")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed of the first chunk")
    parser.add_argument("--skip-postgres", action="store_true")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    total = args.bodies or (1_000 if args.quick else 200_000)
    info = common.machine_info()
    common.say(f"Fuzz collector | {common.machine_line(info)}")
    pg_problem = "skipped (--skip-postgres)" if args.skip_postgres else common.postgres_problem()
    databases = 1 if pg_problem is not None else 2
    per_database = total // databases
    common.say(f"{per_database:,} hostile bodies per database, hypothesis seed {args.seed}")

    costs = parse_costs(20_000 if args.quick else 20_000_000)
    common.say("\nparse_json on hostile bodies, against a valid body of the same size:")
    common.print_table(
        ["body", "bytes", "ms", "ratio", "answer"],
        [
            [
                r["body"],
                f"{r['bytes']:,}",
                f"{r['seconds'] * 1e3:.3f}",
                f"{r['ratio']:.2f}",
                r["outcome"],
            ]
            for r in costs
        ],
    )

    results: dict[str, Any] = {}
    with common.scratch_dir("fuzz") as tmp:
        log = tmp / "collector.log"
        results["SQLite"] = fuzz_database(
            "sqlite", f"sqlite:///{tmp / 'fuzz.db'}", per_database, args.seed, log
        )
        if pg_problem is None:
            with common.postgres_database("bench_fuzz") as url:
                results["PostgreSQL"] = fuzz_database("postgres", url, per_database, args.seed, log)
        else:
            common.say(f"PostgreSQL: {pg_problem}")

    common.say("")
    rows = []
    verdicts = {}
    for db, r in results.items():
        ok = r["server_errors"] == 0 and r["stored"] == r["accepted"]
        verdicts[db] = ok
        statuses = ", ".join(f"{status}: {n:,}" for status, n in r["statuses"].items())
        rows.append(
            [
                db,
                f"{r['bodies']:,}",
                f"{r['hostile_values']:,}",
                f"{r['requests'] / r['seconds']:,.0f}",
                statuses,
                r["server_errors"],
                f"{r['stored']:,} / {r['accepted']:,}",
                common.verdict(ok),
            ]
        )
    common.print_table(
        [
            "database",
            "hostile bodies",
            "hostile values",
            "requests/s",
            "answers by status",
            "5xx",
            "stored / accepted",
            "verdict",
        ],
        rows,
    )
    for db, r in results.items():
        common.say(f"\n{db}: refusals by code: {r['codes']}")
        common.say(f"{db}: records rejected one by one, by code: {r['rejections']}")
    path = common.write_results(
        "fuzz_collector",
        args.quick,
        {
            "machine": info,
            "params": {"bodies": total, "seed": args.seed},
            "parse_costs": costs,
            "results": results,
            "postgres_problem": pg_problem,
        },
    )
    common.say(f"results: {path}")
    passed = bool(verdicts) and all(verdicts.values())
    counts = "; ".join(
        f"{db} {r['bodies']:,} bodies, {r['server_errors']} 5xx" for db, r in results.items()
    )
    common.say(f"Fuzz: {counts}: {common.verdict(passed)} (goal: no 5xx, every good record stored)")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
