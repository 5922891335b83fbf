"""Shared benchmark helpers: timing, machine info, synthetic fleet data, collector processes."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
#: Server used for PostgreSQL benchmarks; each benchmark creates and drops its own database.
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MODEL = "bench-pump-failure"
MODEL_VERSION = "1"

# --- arguments, timing, statistics -----------------------------------------------------------


def parse_args(doc: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> Any:
    """``--quick`` (small sizes, < 30 s, for smoke runs) plus whatever ``extra`` adds."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in < 30 s")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values), q))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call of ``fn``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fmt(value: float, digits: int = 3) -> str:
    """A number for a table: thousands separators for big ones, ``digits`` significant else."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a Markdown table, so a run's output can be pasted as is."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def say(message: str) -> None:
    print(message, flush=True)


# --- machine and run description -------------------------------------------------------------

_PACKAGES = (
    "edge-monitor",
    "sqlalchemy",
    "psycopg",
    "pyarrow",
    "pandas",
    "numpy",
    "fastapi",
    "uvicorn",
    "orjson",
)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, RAM, Python, packages, commit, date."""
    versions: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib(), 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "commit": _git_commit(),
        "load_avg_at_start": list(os.getloadavg()),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['date']} | {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM | "
        f"Python {info['python']} | commit {info['commit']} | "
        f"load avg {info['load_avg_at_start'][0]:.2f}"
    )


def write_results(name: str, quick: bool, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>[-quick].json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


# --- synthetic, realistic fleet data ---------------------------------------------------------

#: 20 sensor-like numeric features: (name, mean, standard deviation, decimals kept).
NUMERIC_FEATURES: tuple[tuple[str, float, float, int], ...] = (
    ("temperature_c", 70.0, 5.0, 2),
    ("vibration_mm_s", 2.0, 0.6, 3),
    ("pressure_bar", 5.5, 0.4, 2),
    ("rpm", 1450.0, 60.0, 2),
    ("current_a", 12.0, 1.5, 2),
    ("voltage_v", 400.0, 4.0, 2),
    ("humidity_pct", 45.0, 8.0, 2),
    ("flow_l_min", 120.0, 15.0, 2),
    ("torque_nm", 85.0, 9.0, 2),
    ("power_kw", 7.5, 0.9, 3),
    ("oil_temp_c", 55.0, 4.0, 2),
    ("bearing_temp_c", 62.0, 6.0, 2),
    ("noise_db", 78.0, 3.5, 2),
    ("load_pct", 65.0, 12.0, 2),
    ("ambient_temp_c", 22.0, 3.0, 2),
    ("inlet_pressure_bar", 1.8, 0.2, 3),
    ("outlet_pressure_bar", 6.1, 0.5, 3),
    ("coolant_temp_c", 35.0, 2.5, 2),
    ("cycle_time_s", 4.2, 0.35, 3),
    ("vibration_axial_mm_s", 1.1, 0.3, 3),
)
#: 5 categorical features: (name, levels, probabilities).
CATEGORICAL_FEATURES: tuple[tuple[str, tuple[str, ...], tuple[float, ...]], ...] = (
    ("machine_type", ("pump", "press", "lathe", "drill", "mill"), (0.4, 0.2, 0.2, 0.1, 0.1)),
    ("shift", ("A", "B", "C"), (0.4, 0.35, 0.25)),
    ("firmware", ("1.4.2", "1.5.0", "1.5.1", "2.0.0"), (0.1, 0.3, 0.5, 0.1)),
    ("site_zone", ("north", "south", "east", "west"), (0.25, 0.25, 0.25, 0.25)),
    ("operating_mode", ("auto", "manual", "maintenance"), (0.8, 0.15, 0.05)),
)
FEATURE_NAMES = tuple(f[0] for f in NUMERIC_FEATURES) + tuple(f[0] for f in CATEGORICAL_FEATURES)


def new_id(ms: int | None = None) -> str:
    """A fresh id exactly as the SDK makes record ids (UUIDv7: time-ordered, 32 hex digits)."""
    from monitor.sdk.records import new_id as sdk_new_id

    return sdk_new_id(ms)


class Synth:
    """Synthetic predictions of a pump-failure model: 25 features, a class, probabilities.

    Numeric values are rounded like real sensor readings (2-3 decimals), so compression and
    storage see realistic entropy; generation is vectorised, so 1M records take seconds.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def columns(self, n: int) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {}
        for name, mean, sd, decimals in NUMERIC_FEATURES:
            values = self.rng.normal(mean, sd, n)
            if name.startswith("vibration"):
                values = np.abs(values)
            cols[name] = np.round(values, decimals).tolist()
        for name, levels, p in CATEGORICAL_FEATURES:
            picks = self.rng.choice(len(levels), n, p=p)
            cols[name] = [levels[i] for i in picks.tolist()]
        return cols

    def inputs(self, n: int) -> list[tuple[dict[str, Any], str, dict[str, float], float]]:
        """What an inference loop hands to ``Monitor.log``: (features, prediction, proba, ms)."""
        cols = self.columns(n)
        temp = np.asarray(cols["temperature_c"])
        vib = np.asarray(cols["vibration_mm_s"])
        risk = 1.0 / (1.0 + np.exp(-(0.3 * (temp - 80.0) + 2.0 * (vib - 3.0))))
        risk = np.round(risk, 4)
        latency = np.round(self.rng.lognormal(np.log(1.5), 0.3, n), 3).tolist()
        names = list(cols)
        features = [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]
        out = []
        for f, r, ms in zip(features, risk.tolist(), latency, strict=True):
            r_ok = round(1.0 - r, 4)
            out.append((f, "fail" if r > 0.5 else "ok", {"ok": r_ok, "fail": r}, ms))
        return out

    def records(self, n: int, ts_start: float, ts_step: float) -> list[dict[str, Any]]:
        """``n`` wire records as the SDK sends them (see ``monitor.wire``): a time-ordered id
        that is also the request id (so no ``request_id`` field), ``ts`` in milliseconds,
        ``ts_step`` seconds apart plus jitter."""
        jitter = self.rng.uniform(0.0, ts_step, n)
        ts = np.round(ts_start + np.arange(n) * ts_step + jitter, 3).tolist()
        records = []
        for (features, prediction, proba, ms), t in zip(self.inputs(n), ts, strict=True):
            records.append(
                {
                    "id": new_id(int(t * 1000)),
                    "ts": t,
                    "features": features,
                    "prediction": prediction,
                    "probabilities": proba,
                    "latency_ms": ms,
                }
            )
        return records


# --- databases ---------------------------------------------------------------------------------


def postgres_problem() -> str | None:
    """Why the PostgreSQL server cannot be used, or None."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not available here"
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})"
    return None


def postgres_version() -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("show server_version")).scalar_one())
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark run, dropped afterwards; yields its URL."""
    import sqlalchemy as sa

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory (SQLite files, spools, Parquet), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"edge-monitor-{prefix}-") as path:
        yield Path(path)


def migrate(database_url: str) -> None:
    """``python -m monitor --database-url URL db upgrade``, as an operator would run it."""
    run_cli(database_url, "db", "upgrade")


def run_cli(database_url: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "--database-url", database_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    if out.returncode != 0:
        raise RuntimeError(f"edge-monitor {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def register_fleet(database_url: str, node_names: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Register the benchmark model and nodes through the storage API: name -> (id, token)."""
    from monitor.storage import models, nodes
    from monitor.storage.engine import begin_write, make_engine

    engine = make_engine(database_url)
    try:
        with begin_write(engine) as conn:
            if models.find_model(conn, MODEL) is None:
                models.add_model(conn, MODEL, description="benchmark")
            fleet = {}
            for name in node_names:
                node, token = nodes.add_node(conn, name, group_name="bench")
                fleet[name] = (node.id, token)
    finally:
        engine.dispose()
    return fleet


# --- a real collector process ----------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CollectorProcess:
    """``python -m monitor --database-url URL serve --port P`` on loopback, stopped by SIGTERM.

    The database must be migrated first (``migrate``); output goes to ``log_path``.
    """

    def __init__(
        self, database_url: str, log_path: Path, port: int | None = None, workers: int = 1
    ) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CollectorProcess:
        cmd = [sys.executable, "-m", "monitor", "--database-url", self.database_url]
        cmd += ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"collector not ready after {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- a stub collector: answers every request at once, costs next to no CPU ---------------------


def serve_stub_collector(port: int) -> None:
    """Answer POST /v1/records with everything accepted, without parsing or storing it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = b'{"accepted":0,"duplicate":0,"rejected":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class StubCollectorProcess(CollectorProcess):
    """``serve_stub_collector`` in its own process (``python bench/common.py stub PORT``)."""

    def start(self, timeout: float = 30.0) -> CollectorProcess:
        cmd = [sys.executable, __file__, "stub", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("stub collector did not start")


if __name__ == "__main__" and sys.argv[1:2] == ["stub"]:
    serve_stub_collector(int(sys.argv[2]))
