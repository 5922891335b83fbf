"""P6: the dashboard's Fleet page with 1,000 nodes and 1,000,000 records in the last window,
against the same page built from a plain ``SELECT *`` of the window's rows into pandas.

The window (P4's generator: 25 features, a class prediction with two probabilities, 1,000
nodes of Zipf-like sizes at 10 sites in 40 groups, labels for 10% of the records) is written to
SQLite and PostgreSQL through ``prepare_batch`` + ``insert_batch`` (batches of at most 500
records per node). No drift fleet-wide; every node of one site (``site-g``) reads two features
shifted, so that site and its 100 nodes drift. Each node then sends one heartbeat (SDK
counters, spool, runtime latency percentiles), the health job judges the fleet, and the real
worker analyses the window once (``Worker.analyse``, timed and printed, not part of P6).

Subject: one first full render of the Fleet page with a cold cache, as a viewer opening the
dashboard gets it: ``AppTest`` runs ``dashboards/app.py`` (the Fleet page is its default) on
the database, ``st.cache_data`` cleared first. That run prepares the page's data
(``monitor.dashboards.data.fleet.fleet_view``: node states, health rows, the latest window's
stored results, records per hour from one grouped query over the batches, alerts) and draws
it (tiles, site charts, the node table's first page). The preparation alone is timed too.

Baseline, in the same process and interleaved: the same page with its per-node record figures
taken from the window's rows: ``pd.read_sql`` of ``SELECT records.*, batches.received_at, ...
FROM records JOIN batches`` for the window (one row per record), grouped per node in pandas;
everything else as in the subject. It is a lower bound of a page built that way: it reads only
the records' index rows, not their payloads (``load_window``'s time, the columnar path to the
full rows, is printed beside it). The bench checks that both pages show the same records per
hour for every node. Goals: subject <= 2 s, and subject / baseline <= 0.2 (median of the
per-repetition ratios).

    .venv/bin/python bench/p6_fleet_page.py          # 1M rows, 1,000 nodes, both databases
    .venv/bin/python bench/p6_fleet_page.py --quick  # 50k rows, 100 nodes, SQLite; < 60 s
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import logging
import os
import pstats
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

import common
import p4_drift_job as p4

GOAL_SECONDS = 2.0
GOAL_RATIO = 0.2
APP = common.REPO / "dashboards" / "app.py"
#: Nodes judged offline after this long without a heartbeat while the bench runs (the nodes
#: beat once, as the fill ends).
OFFLINE_AFTER_SECONDS = 3_600


# --- the fleet ---------------------------------------------------------------------------------


def fleet_of(rows: int, n_nodes: int) -> p4.Fleet:
    """10 sites, 4 groups per site; ``shifted_every`` = the number of sites puts every shifted
    node (the 7th, 17th, ...) at the same site: ``site-g`` drifts, whole."""
    return p4.Fleet(rows, n_nodes, sites=10, groups=40, shifted_every=10)


@contextlib.contextmanager
def one_site_drifting() -> Iterator[None]:
    """P4's generator without its fleet-wide shift: only the shifted nodes (one site) drift."""
    saved = p4.FLEET_SHIFT
    p4.FLEET_SHIFT = {}
    try:
        yield
    finally:
        p4.FLEET_SHIFT = saved


def heartbeats_and_health(url: str, fleet: p4.Fleet) -> None:
    """One heartbeat per node (as the SDK sends it, with runtime telemetry), then the health
    job's verdicts, as the worker stores them."""
    from monitor.jobs.health import HealthRules, check_fleet
    from monitor.storage import models
    from monitor.storage.engine import begin_write, make_engine
    from monitor.storage.heartbeats import record_heartbeat
    from monitor.storage.nodes import get_node

    engine = make_engine(url)
    now = datetime.now(UTC)
    with begin_write(engine) as conn:
        model_id = models.get_model(conn, common.MODEL).id
        version_id = models.version_id(conn, model_id, common.MODEL_VERSION)
        for i, name in enumerate(fleet.names):
            node = get_node(conn, name)
            record_heartbeat(
                conn,
                node_id=node.id,
                ts=now,
                model_version_id=version_id,
                sdk={
                    "sent": 1000 + i,
                    "dropped": {"sampled_out": 10, "queue_full": 3 if i % 97 == 0 else 0},
                    "spool_records": (i * 37) % 500,
                    "queue_depth": i % 11,
                    "internal_errors": 0,
                },
                runtime={"latency_ms": {"p50": 1.5, "p95": 2.0 + (i % 50) / 10}, "errors": 0},
            )
        # The window is in the past and was received just now, as an import of history: a
        # backlog by the health job's rule, which is not what this benchmark is about.
        rules = HealthRules(
            offline_after=timedelta(seconds=OFFLINE_AFTER_SECONDS),
            backlog_lag=timedelta(days=3650),
        )
        check_fleet(conn, rules, now)
    engine.dispose()


# --- the baseline's rows --------------------------------------------------------------------------


def window_rows(conn: sa.Connection, model_id: int) -> pd.DataFrame:
    """The latest analysed window's rows as a plain query gives them: every record's index row
    with its batch's times and its node's name, one row per record."""
    from monitor.storage import results

    start = results.latest_window_start(conn, model_id)
    (window_end,) = [end for s, end in results.analysed_windows(conn, model_id) if s == start]
    query = sa.text(
        "SELECT records.*, batches.received_at, batches.min_ts, batches.max_ts, "
        "nodes.name AS node FROM records "
        "JOIN batches ON batches.id = records.batch_id "
        "JOIN nodes ON nodes.id = records.node_id "
        "WHERE batches.model_id = :model AND batches.max_ts >= :start AND batches.min_ts < :end"
    )
    bound = {"model": model_id, "start": _bind(conn, start), "end": _bind(conn, window_end)}
    return pd.read_sql(query, conn, params=bound)


def _bind(conn: sa.Connection, moment: datetime) -> Any:
    # SQLite stores the column type's text form; PostgreSQL takes the datetime.
    from monitor.storage.tables import batches

    processor = batches.c.max_ts.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(moment) if processor is not None else moment


def naive_records_by_node(conn: sa.Connection, model_id: int, since: datetime) -> dict[str, int]:
    """Records per node received since ``since``, counted in pandas from the window's rows."""
    frame = window_rows(conn, model_id)
    received = pd.to_datetime(frame["received_at"], utc=True, format="ISO8601")
    recent = frame[received >= pd.Timestamp(since)]
    return {str(k): int(v) for k, v in recent.groupby("node").size().items()}


@contextlib.contextmanager
def naive_page() -> Iterator[None]:
    """The Fleet page with its record figures from ``naive_records_by_node``."""
    from monitor.storage import fleet

    saved = fleet.records_received_by_node
    fleet.records_received_by_node = naive_records_by_node  # type: ignore[assignment]
    try:
        yield
    finally:
        fleet.records_received_by_node = saved  # type: ignore[assignment]


# --- the subject -------------------------------------------------------------------------------


def render(url: str) -> tuple[float, Any]:
    """(seconds, AppTest) of one first full render of the Fleet page, cache cleared."""
    import streamlit as st
    from streamlit import logger
    from streamlit.testing.v1 import AppTest

    # Bare mode's notes (no server runtime) are not this benchmark's output.
    logger.set_log_level("error")
    os.environ["MONITOR_DATABASE_URL"] = url
    os.environ["MONITOR_HEALTH_OFFLINE_AFTER_SECONDS"] = str(OFFLINE_AFTER_SECONDS)
    st.cache_data.clear()
    gc.collect()
    started = time.perf_counter()
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    seconds = time.perf_counter() - started
    if app.exception:
        raise RuntimeError(f"the Fleet page failed: {app.exception or app.error}")
    return seconds, app


def prepare(url: str) -> tuple[float, Any]:
    """(seconds, FleetView) of the page's data preparation alone."""
    from monitor.dashboards.data import fleet as data
    from monitor.storage.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:  # the pool's first connection is the app's, not the read's
        conn.exec_driver_sql("SELECT 1")
    gc.collect()
    now = datetime.now(UTC)
    started = time.perf_counter()
    view = data.fleet_view(engine, common.MODEL, now, OFFLINE_AFTER_SECONDS)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds, view


def shown(app: Any) -> dict[str, Any]:
    """What the rendered page says: its tiles, its drift headline, the node table's first page."""
    tiles = {m.label: m.value for m in app.metric}
    headline = next((m.value for m in app.markdown if m.value.startswith("**Drifting")), None)
    tables = [t.value for t in app.dataframe]
    nodes = next(t for t in tables if "records_per_hour" in t.columns and "node" in t.columns)
    return {"tiles": tiles, "headline": headline, "first_page": len(nodes)}


def harness_seconds(folder: Path) -> float:
    """An AppTest run of the app on an empty database: what the test harness itself costs
    (the script thread, Streamlit's scan of installed components), with nothing to read."""
    url = f"sqlite:///{folder / 'empty.db'}"
    common.migrate(url)
    return common.median([render(url)[0] for _ in range(3)])


def load_window_seconds(url: str, model_id: int) -> float:
    """``load_window`` of the analysed window (the columnar path to the full rows), for context."""
    from monitor.storage.engine import make_engine
    from monitor.storage.windows import load_window

    engine = make_engine(url)
    gc.collect()
    started = time.perf_counter()
    with engine.connect() as conn:
        frame = load_window(conn, model_id, p4.WINDOW.start, p4.WINDOW.end)
    seconds = time.perf_counter() - started
    del frame
    engine.dispose()
    return seconds


def profile(fn: Callable[[], Any], top: int = 20) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    return "\n".join(line for line in text.getvalue().splitlines() if line.strip())


# --- the run -----------------------------------------------------------------------------------


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="records in the window")
    parser.add_argument("--nodes", type=int, help="nodes")
    parser.add_argument("--reps", type=int, help="repetitions (interleaved)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile one render (SQLite)")


def measure(label: str, url: str, model_id: int, reps: int) -> dict[str, Any]:
    """Interleaved renders: the page, then the naive page; and the preparation alone."""
    from monitor.storage.engine import make_engine

    subject: list[float] = []
    baseline: list[float] = []
    preparation: list[float] = []
    # A first, untimed render: imports (plotly, pandas' Styler) are the process's, not a view's.
    render(url)
    for rep in range(reps):
        seconds, app = render(url)
        subject.append(seconds)
        with naive_page():
            naive_seconds, naive_app = render(url)
        baseline.append(naive_seconds)
        preparation.append(prepare(url)[0])
        common.say(
            f"  {label} rep {rep + 1}: page {seconds:.3f} s (preparation {preparation[-1]:.3f} s), "
            f"page from SELECT * {naive_seconds:.3f} s, ratio {seconds / naive_seconds:.3f} "
            f"(load avg {os.getloadavg()[0]:.2f})"
        )
    page = shown(app)
    naive = shown(naive_app)
    # Both pages must show the same figures: the same tiles, the same records per hour.
    _, view = prepare(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        since = datetime.now(UTC) - timedelta(hours=1)
        naive_rates = naive_records_by_node(conn, model_id, since)
        started = time.perf_counter()
        rows = window_rows(conn, model_id)
        read_seconds = time.perf_counter() - started
    engine.dispose()
    rates = dict(zip(view.nodes["node"], view.nodes["records_per_hour"], strict=True))
    same_rates = all(rates[n] == naive_rates.get(n, 0) for n in rates)
    if page["tiles"] != naive["tiles"] or not same_rates:
        raise RuntimeError(f"{label}: the two pages differ: {page['tiles']} / {naive['tiles']}")
    ratios = [s / b for s, b in zip(subject, baseline, strict=True)]
    return {
        "subject": subject,
        "baseline": baseline,
        "preparation": preparation,
        "median": common.median(subject),
        "baseline_median": common.median(baseline),
        "preparation_median": common.median(preparation),
        "ratios": ratios,
        "ratio": common.median(ratios),
        "read_sql_seconds": read_seconds,
        "window_rows": len(rows),
        "load_window_seconds": load_window_seconds(url, model_id),
        "tiles": page["tiles"],
        "headline": page["headline"],
        "first_page_rows": page["first_page"],
        "nodes": len(view.nodes),
        "nodes_drifting": view.nodes_drifting,
        "records_per_hour_total": int(view.nodes["records_per_hour"].sum()),
    }


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    rows = args.rows or (50_000 if args.quick else 1_000_000)
    n_nodes = args.nodes or (100 if args.quick else 1_000)
    reps = args.reps or (1 if args.quick else 3)
    fleet = fleet_of(rows, n_nodes)
    info = common.machine_info()
    common.say(f"P6 Fleet page | {common.machine_line(info)}")
    common.say(
        f"window: {rows:,} records, {n_nodes:,} nodes at {fleet.sites} sites in {fleet.groups} "
        f"groups, one site drifting ({len(fleet.shifted())} nodes); labels for "
        f"{fleet.label_share:.0%}; {reps} reps"
    )
    skip_pg = args.skip_postgres or args.quick
    pg_problem = "skipped" if skip_pg else common.postgres_problem()
    if pg_problem is None:
        info["postgresql"] = common.postgres_version()
    else:
        common.say(f"PostgreSQL: {pg_problem}")
    logging.getLogger("monitor").setLevel(logging.ERROR)
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp: Path = stack.enter_context(common.scratch_dir("p6"))
        urls = {"SQLite": f"sqlite:///{tmp / 'p6.db'}"}
        if pg_problem is None:
            urls["PostgreSQL"] = stack.enter_context(common.postgres_database("bench_p6"))
        for url in urls.values():
            common.migrate(url)
        started = time.perf_counter()
        with one_site_drifting():
            stored = p4.fill(urls, fleet)
        common.say(
            f"filled in {time.perf_counter() - started:.1f} s ("
            + ", ".join(
                f"{k} insert_batch + labels {v.fill_seconds:.1f} s" for k, v in stored.items()
            )
            + ")"
        )
        from monitor.storage.engine import make_engine

        for label, where in stored.items():
            heartbeats_and_health(where.url, fleet)
            p4.analyze(where.url)
            engine = make_engine(where.url)
            seconds, _, _ = p4.run_job(engine, where.model_id, p4.WINDOW)
            engine.dispose()
            p4.analyze(where.url)
            common.say(
                f"  {label}: heartbeats, health job; Worker.analyse of the window {seconds:.2f} s"
            )
        for label, where in stored.items():
            out[label] = measure(label, where.url, where.model_id, reps)
        harness = harness_seconds(tmp)
        if args.profile:
            url = stored["SQLite"].url
            out["SQLite"]["profile"] = profile(lambda: render(url))
    common.say("")
    table = []
    for label, r in out.items():
        table.append(
            [
                label,
                f"{r['median']:.3f}",
                f"{r['preparation_median']:.3f}",
                f"{r['baseline_median']:.3f}",
                f"{r['ratio']:.3f}",
                common.verdict(r["median"] <= GOAL_SECONDS),
                common.verdict(r["ratio"] <= GOAL_RATIO),
            ]
        )
    common.print_table(
        [
            "database",
            "page s (median)",
            "preparation alone s",
            "page from SELECT * s",
            "ratio",
            f"page <= {GOAL_SECONDS} s",
            f"ratio <= {GOAL_RATIO}",
        ],
        table,
    )
    common.say(
        f"AppTest on an empty database (the harness alone, in every render above): {harness:.3f} s"
    )
    for label, r in out.items():
        common.say(
            f"{label}: read_sql of the window's {r['window_rows']:,} rows alone "
            f"{r['read_sql_seconds']:.3f} s; load_window (full rows, columnar) "
            f"{r['load_window_seconds']:.3f} s; page shows {r['nodes']:,} nodes "
            f"({r['first_page_rows']} on its first page), {r['nodes_drifting']} drifting, "
            f"{r['records_per_hour_total']:,} records in the last hour"
        )
        common.say(f"{label}: tiles {r['tiles']}; headline: {r['headline']}")
        if "profile" in r:
            common.say(f"{label} cProfile of one render (top by cumulative time):\n{r['profile']}")
    passed = bool(out) and all(
        r["median"] <= GOAL_SECONDS and r["ratio"] <= GOAL_RATIO for r in out.values()
    )
    path = common.write_results(
        "p6_fleet_page",
        args.quick,
        {
            "machine": info,
            "params": {"rows": rows, "nodes": n_nodes, "reps": reps},
            "harness_seconds": harness,
            "results": out,
            "postgres_problem": pg_problem,
        },
    )
    common.say(f"results: {path}")
    figures = "; ".join(
        f"{label} {r['median']:.3f} s {common.verdict(r['median'] <= GOAL_SECONDS)}, ratio "
        f"{r['ratio']:.3f} {common.verdict(r['ratio'] <= GOAL_RATIO)}"
        for label, r in out.items()
    )
    common.say(
        f"P6 Fleet page first render = {figures}: {common.verdict(passed)} "
        f"(goals: <= {GOAL_SECONDS} s, <= {GOAL_RATIO} x the page from SELECT *)"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
