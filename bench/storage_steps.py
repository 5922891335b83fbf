"""The analysis job's storage steps alone, at P5's size: ``load_window``, ``window_labels`` and
``results.save_window``, each timed in a fresh process with its peak RSS.

P5 times these inside a whole ``Worker.analyse`` (four minutes a run); this times them alone,
so a change to one of them can be measured in seconds. ``fill`` writes P5's window (1M rows,
1,000 nodes, labels for 10%) into a SQLite file and a PostgreSQL database that stay, runs the
job once to keep its results (pickled) for ``save_window``, and keeps the window frame and the
labels as loaded then, so that later code can be checked to load the same. ``measure`` runs
every step ``--reps`` times in fresh processes (interleaved) and prints medians.

    .venv/bin/python bench/storage_steps.py fill DIR          # once: ~5 min
    .venv/bin/python bench/storage_steps.py expect DIR        # again: results, frame, labels
    .venv/bin/python bench/storage_steps.py measure DIR [--reps 3] [--check]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import p4_drift_job as p4

PG_NAME = "bench_storage_steps"
STEPS = ("load_window", "window_labels", "save_window")


def urls(directory: Path) -> dict[str, str]:
    import sqlalchemy as sa

    pg = sa.engine.make_url(common.POSTGRES_ADMIN_URL).set(database=PG_NAME)
    return {
        "SQLite": f"sqlite:///{directory / 'steps.db'}",
        "PostgreSQL": pg.render_as_string(hide_password=False),
    }


def fill(directory: Path, rows: int) -> None:
    import sqlalchemy as sa

    directory.mkdir(parents=True, exist_ok=True)
    admin = sa.create_engine(common.POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{PG_NAME}"'))
    admin.dispose()
    (directory / "steps.db").unlink(missing_ok=True)
    where = urls(directory)
    for url in where.values():
        common.migrate(url)
    fleet = p4.Fleet(rows, 1_000 if rows >= 100_000 else 100, sites=0, groups=10, shifted_every=50)
    stored = p4.fill(where, fleet)
    p4.analyze(where["PostgreSQL"])
    (directory / "ids.json").write_text(json.dumps({k: v.model_id for k, v in stored.items()}))
    expect(directory)


def expect(directory: Path) -> None:
    """Keep the job's results (for ``save_window``) and the window and labels as loaded now."""
    where = urls(directory)
    from monitor.jobs.analysis import AnalysisConfig, Worker, analyse_window
    from monitor.storage.engine import make_engine
    from monitor.storage.labels import window_labels
    from monitor.storage.windows import load_window

    engine = make_engine(where["SQLite"])
    worker = Worker(engine, AnalysisConfig())
    with engine.connect() as conn:
        model = p4.models.get_model(conn, common.MODEL)
    data = worker._load(model, p4.WINDOW)
    analysis = analyse_window(data, worker.config.policy)
    with engine.connect() as conn:
        frame = load_window(conn, model.id, p4.WINDOW.start, p4.WINDOW.end)
        labels = window_labels(conn, model.id, p4.WINDOW.start, p4.WINDOW.end)
    engine.dispose()
    with open(directory / "expected.pkl", "wb") as out:
        pickle.dump(
            {
                "results": analysis.results,
                "model_version_id": analysis.model_version_id,
                "n_reference": analysis.n_reference,
                "frame": frame,
                "labels": dict(labels) if isinstance(labels, dict) else labels,
            },
            out,
        )


def child(url: str, model_id: int, step: str, expected_path: str, check: bool) -> dict[str, Any]:
    import pandas as pd

    from monitor.storage import results
    from monitor.storage.engine import begin_write, make_engine
    from monitor.storage.labels import window_labels
    from monitor.storage.windows import load_window

    # Without --check only save_window needs what fill kept (its results), so the other
    # steps' peaks are the process's own.
    expected: dict[str, Any] = {}
    if check or step == "save_window":
        with open(expected_path, "rb") as f:
            expected = pickle.load(f)
    expected_value = expected.pop("frame" if step == "load_window" else "labels", None)
    expected.pop("frame", None)
    expected.pop("labels", None)
    gc.collect()
    engine = make_engine(url)
    with engine.connect() as conn:  # connect and warm the pool first: not the step's time
        conn.exec_driver_sql("SELECT 1")
    before = p4.memory_gb("VmRSS")
    p4.reset_peak()
    window = p4.WINDOW
    started = time.perf_counter()
    if step == "load_window":
        with engine.connect() as conn:
            value: Any = load_window(conn, model_id, window.start, window.end)
    elif step == "window_labels":
        with engine.connect() as conn:
            value = window_labels(conn, model_id, window.start, window.end)
    else:
        with begin_write(engine) as conn:
            value = results.save_window(
                conn,
                model_id,
                window.start,
                window.end,
                expected["results"],
                model_version_id=expected["model_version_id"],
                n_reference=expected["n_reference"],
            )
    seconds = time.perf_counter() - started
    peak = p4.memory_gb()
    same = None
    if check and step == "load_window":
        pd.testing.assert_frame_equal(value, expected_value, check_exact=True)
        same = True
    elif check and step == "window_labels":
        got = value if isinstance(value, dict) else dict(zip(*value, strict=True))
        if isinstance(value, pd.Series):
            got = value.to_dict()
        same = got == expected_value
    engine.dispose()
    return {"seconds": seconds, "peak_gb": peak, "rss_before_gb": before, "same": same}


def measure(directory: Path, reps: int, check: bool, only: list[str]) -> None:
    ids = json.loads((directory / "ids.json").read_text())
    where = urls(directory)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    common.say(f"load average {os.getloadavg()}")
    for _ in range(reps):
        for step in only:
            for label, url in where.items():
                cmd = [
                    sys.executable,
                    __file__,
                    "child",
                    url,
                    str(ids[label]),
                    step,
                    str(directory / "expected.pkl"),
                ] + (["--check"] if check else [])
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO)
                if done.returncode != 0:
                    raise RuntimeError(done.stderr[-3000:])
                runs.setdefault((step, label), []).append(json.loads(done.stdout.splitlines()[-1]))
    common.say(f"load average {os.getloadavg()}")
    rows = []
    for (step, label), found in runs.items():
        rows.append(
            [
                step,
                label,
                " / ".join(f"{r['seconds']:.3f}" for r in found),
                f"{common.median([r['seconds'] for r in found]):.3f}",
                f"{max(r['peak_gb'] for r in found):.3f}",
                f"{common.median([r['rss_before_gb'] for r in found]):.3f}",
                str({r["same"] for r in found}),
            ]
        )
    common.print_table(
        ["step", "database", "seconds", "median s", "peak RSS GB", "RSS before GB", "same"], rows
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fill")
    f.add_argument("directory", type=Path)
    f.add_argument("--rows", type=int, default=1_000_000)
    e = sub.add_parser("expect")
    e.add_argument("directory", type=Path)
    m = sub.add_parser("measure")
    m.add_argument("directory", type=Path)
    m.add_argument("--reps", type=int, default=3)
    m.add_argument("--check", action="store_true", help="compare with what fill loaded")
    m.add_argument("--steps", nargs="*", default=list(STEPS))
    c = sub.add_parser("child")
    c.add_argument("url")
    c.add_argument("model_id", type=int)
    c.add_argument("step")
    c.add_argument("expected")
    c.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.command == "fill":
        fill(args.directory, args.rows)
    elif args.command == "expect":
        expect(args.directory)
    elif args.command == "measure":
        measure(args.directory, args.reps, args.check, args.steps)
    else:
        print(json.dumps(child(args.url, args.model_id, args.step, args.expected, args.check)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
