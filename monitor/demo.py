"""`edge-monitor demo`: the collector on embedded SQLite, fed by simulated nodes through the SDK."""

from __future__ import annotations

import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.config import Settings

MODEL = "demo-pump-failure"
VERSION = "1"


def run_demo(settings: Settings, *, nodes: int, records_per_node: int, port: int = 0) -> int:
    """Start a collector, ship synthetic sensor records from ``nodes`` nodes, report what
    landed in SQL. Returns the process exit code."""
    from monitor.collector.server import BackgroundCollector
    from monitor.storage import migrations
    from monitor.storage import models as model_store
    from monitor.storage import nodes as node_store
    from monitor.storage.engine import begin_write, make_engine

    url = settings.resolved_database_url
    say(f"database: {url}")
    migrations.upgrade(url)
    engine = make_engine(url)
    run_tag = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    with begin_write(engine) as conn:
        if model_store.find_model(conn, MODEL) is None:
            model_store.add_model(conn, MODEL, description="synthetic pump sensors")
        tokens = {}
        for i in range(nodes):
            name = f"demo-{run_tag}-{i + 1:02d}"
            tokens[name] = node_store.add_node(conn, name, group_name="demo", site=f"site-{i % 2}")[
                1
            ]
    started = datetime.now(UTC)
    with BackgroundCollector(settings, port=port) as collector:
        say(f"collector listening on {collector.url} (API docs: {collector.url}/docs)")
        threads = [
            threading.Thread(target=_ship, args=(collector.url, token, seed, records_per_node))
            for seed, token in enumerate(tokens.values())
        ]
        total = nodes * records_per_node
        say(f"{nodes} nodes are shipping {total} records ...")
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            _progress(engine, total)
            time.sleep(0.5)
        _progress(engine, total, final=True)
    _report(engine, tokens, started)
    engine.dispose()
    return 0


def _ship(url: str, token: str, seed: int, count: int) -> None:
    from monitor.sdk import Monitor

    rng = random.Random(seed)
    with Monitor(url, token, MODEL, VERSION, spool_dir=False, flush_interval=0.2) as monitor:
        for _ in range(count):
            temperature = rng.gauss(70, 5)
            vibration = abs(rng.gauss(2.0, 0.6))
            risk = 1 / (1 + pow(2.718, -(0.3 * (temperature - 80) + 2 * (vibration - 3))))
            monitor.log(
                {
                    "temperature": round(temperature, 2),
                    "vibration": round(vibration, 3),
                    "pressure": round(rng.gauss(5.5, 0.4), 2),
                    "rpm": round(rng.gauss(1450, 60)),
                    "machine_type": rng.choice(["pump", "press", "lathe"]),
                },
                "fail" if risk > 0.5 else "ok",
                probabilities={"ok": round(1 - risk, 4), "fail": round(risk, 4)},
                latency_ms=round(rng.uniform(0.4, 2.5), 3),
            )
            time.sleep(0.0005)
        monitor.flush(timeout=30)


def _progress(engine: Engine, total: int, *, final: bool = False) -> None:
    from monitor.storage.records import count_records

    with engine.connect() as conn:
        stored = count_records(conn)
    width = 30
    done = min(stored, total)
    bar = "#" * (width * done // max(total, 1))
    end = "\n" if final else "\r"
    sys.stdout.write(f"  [{bar:<{width}}] {done}/{total} records stored{end}")
    sys.stdout.flush()


def _report(engine: Engine, tokens: dict[str, str], started: datetime) -> None:
    from monitor.storage import models as model_store
    from monitor.storage import nodes as node_store
    from monitor.storage.windows import feature_names, load_window

    with engine.connect() as conn:
        model = model_store.get_model(conn, MODEL)
        names = {n.id: n.name for n in node_store.list_nodes(conn) if n.name in tokens}
        frame = load_window(
            conn,
            model.id,
            started - timedelta(minutes=1),
            datetime.now(UTC) + timedelta(minutes=1),
            node_ids=list(names),
        )
    say(f"landed: {len(frame)} records of model {MODEL} in this run")
    if len(frame):
        say(f"features: {', '.join(feature_names(frame))}")
        counts = frame.groupby("node_id", observed=True).size()
        say("records per node: " + ", ".join(f"{names[k]}: {v}" for k, v in counts.items()))
        say(f"distinct record ids: {frame['record_id'].nunique()} (each stored exactly once)")
        say(f"predictions: {frame['prediction'].value_counts().to_dict()}")
        say(f"mean temperature: {frame['feature:temperature'].mean():.2f}")


def say(message: str) -> None:
    print(message, flush=True)
