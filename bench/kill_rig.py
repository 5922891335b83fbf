"""Kill rig, long form: 50 collector and 20 SDK SIGKILLs behind a proxy that drops 20% of answers
and resets 5% of connections; every promised record stored exactly once, every record counted.

The rig itself is tests/e2e/rig.py (its docstring states the accounting); tests/e2e/
test_kill_rig.py runs a short form of it in CI. This script runs the issue's full figures on
SQLite and PostgreSQL and prints, per database: produced, delivered, duplicates, records lost
within and outside the SDK's durability window, drops by reason, the kills and the proxy's
faults, and the duration. It measures no speed: its verdict is the invariants.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import common
from monitor.storage.engine import make_engine

sys.path.insert(0, str(common.REPO))  # the rig lives with the end-to-end tests
from tests.e2e.rig import RigConfig, RigResult, run_rig


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--senders", type=int, help="SDK processes (default 3)")
    parser.add_argument("--collector-kills", type=int, help="collector SIGKILLs (default 50)")
    parser.add_argument("--sdk-kills", type=int, help="SDK SIGKILLs (default 20)")
    parser.add_argument("--duration", type=float, help="seconds the kills are spread over")
    parser.add_argument("--rate", type=float, default=100.0, help="records/s per sender")
    parser.add_argument("--drop-rate", type=float, default=0.2, help="answers dropped")
    parser.add_argument("--reset-rate", type=float, default=0.05, help="connections reset")
    parser.add_argument(
        "--upstream-down",
        choices=("502", "close"),
        default="502",
        help="the proxy's answer while the collector is down",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")


def config(args: Any) -> RigConfig:
    if args.quick:
        senders, collector_kills, sdk_kills, duration, rate = 3, 3, 2, 8.0, 75.0
    else:
        senders, collector_kills, sdk_kills, duration, rate = 3, 50, 20, 180.0, args.rate
    senders = args.senders or senders
    collector_kills = collector_kills if args.collector_kills is None else args.collector_kills
    sdk_kills = sdk_kills if args.sdk_kills is None else args.sdk_kills
    duration = args.duration or duration
    # Senders log for longer than the schedule (restarts add to it), so every SDK kill finds
    # one running; the records per sender follow from the rate.
    records = int(rate * duration * (1.05 if args.quick else 1.3))
    return RigConfig(
        senders=senders,
        records_per_sender=records,
        rate=rate,
        duration=duration,
        collector_kills=collector_kills,
        sdk_kills=sdk_kills,
        drop_rate=args.drop_rate,
        reset_rate=args.reset_rate,
        seed=args.seed,
        upstream_down=args.upstream_down,
        final_timeout=600.0,
    )


def run_on(name: str, url: str, cfg: RigConfig, tmp: Any) -> RigResult:
    common.say(f"\n{name}: migrating, then {cfg.collector_kills} + {cfg.sdk_kills} kills ...")
    common.migrate(url)
    engine = make_engine(url)
    try:
        return run_rig(engine, url, tmp / name, cfg, backend=name, progress=common.say)
    finally:
        engine.dispose()


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    cfg = config(args)
    info = common.machine_info()
    common.say(f"kill rig | {common.machine_line(info)}")
    common.say(
        f"{cfg.senders} senders x {cfg.records_per_sender:,} records at {cfg.rate:g}/s; "
        f"{cfg.collector_kills} collector and {cfg.sdk_kills} SDK SIGKILLs over "
        f"{cfg.duration:g} s; proxy drops {cfg.drop_rate:.0%} of answers, resets "
        f"{cfg.reset_rate:.0%}, answers {cfg.upstream_down} while the collector is down; "
        f"durability window {cfg.durability_window} s; seed {cfg.seed}"
    )
    databases = ["sqlite"] if args.quick and args.database == "both" else [args.database]
    if databases == ["both"]:
        databases = ["sqlite", "postgresql"]
    results: dict[str, RigResult] = {}
    pg_problem = common.postgres_problem() if "postgresql" in databases else None
    with common.scratch_dir("kill-rig") as tmp:
        for name in databases:
            if name == "sqlite":
                results["SQLite"] = run_on("SQLite", f"sqlite:///{tmp / 'rig.db'}", cfg, tmp)
            elif pg_problem is None:
                with common.postgres_database("bench_kill_rig") as url:
                    results["PostgreSQL"] = run_on("PostgreSQL", url, cfg, tmp)
            else:
                common.say(f"PostgreSQL: {pg_problem}")
    rows = []
    for name, r in results.items():
        drops = ", ".join(f"{k} {v}" for k, v in r.dropped.items() if v) or "none"
        proxy = r.proxy
        rows.append(
            [
                name,
                f"{r.produced:,}",
                f"{r.delivered:,}",
                len(r.duplicates),
                r.lost_in_window,
                f"{max((n.oldest_loss for n in r.nodes), default=0.0):.3f}",
                r.lost_outside_window,
                drops,
                f"{len(r.collector_kills)} / {len(r.sdk_kills)}",
                f"{proxy['requests']:,} / {proxy['dropped_answers']:,} / "
                f"{sum(proxy['resets'].values()):,} / {proxy['upstream_down']:,}",
                f"{r.seconds:.0f}",
                common.verdict(not r.violations),
            ]
        )
    common.say("")
    common.print_table(
        [
            "database",
            "produced",
            "delivered",
            "stored twice",
            "lost in window",
            f"oldest lost, s before kill (window {cfg.durability_window})",
            "lost outside window",
            "drops by reason",
            "kills collector / SDK",
            "proxy requests / answers dropped / resets / collector down",
            "seconds",
            "verdict",
        ],
        rows,
    )
    for r in results.values():
        common.say("")
        common.say(r.summary())
    path = common.write_results(
        "kill_rig",
        args.quick,
        {
            "machine": info,
            "config": vars(args),
            "results": {name: r.figures() for name, r in results.items()},
            "violations": {name: r.violations for name, r in results.items()},
        },
    )
    common.say(f"\nresults: {path}")
    passed = bool(results) and all(not r.violations for r in results.values())
    if "postgresql" in databases and pg_problem is not None:
        passed = False
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
