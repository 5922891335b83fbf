"""The kill rig: SDK processes and a collector process SIGKILLed at seeded random times, behind a
proxy that loses answers and resets connections; then the books are checked.

What runs (all on loopback): one ``edge-monitor serve`` process on the database under test;
``tests/e2e/proxy.py``'s ``FaultyProxy`` in front of it; ``senders`` processes of
``tests/e2e/sender.py``, one per node, each on its own spool directory and sending through
the proxy. Two chaos threads follow schedules drawn from the seed: one SIGKILLs the collector
(after it has served for ``min_collector_uptime`` s) and starts it again after a random pause;
the other SIGKILLs a running sender and starts a new run of the same node on the same spool
after a random pause. When both schedules are done, every node's last run finishes its records,
``flush()``es (it must return True) and exits; then the checks run.

The accounting, per node (request ids are ``<node>.r<run>-<n>``, so runs never share an id):

* **produced**: the ledger lines, one per record whose ``log()`` returned, with when it did.
* **delivered**: the produced records stored in the ``records`` table.
* **dropped**: the SDK's drop counters (``wire.DROP_REASONS``) summed over the node's runs.
  Counters live in the SDK process's memory: a run that exits writes its final ``stats()``;
  a SIGKILLed run leaves the snapshot it wrote at most half a second before (sender.py), so
  what such a run dropped after its last snapshot is not counted and shows up as a loss.
  In the rig's setting (sample rate 1, valid records, caps far above its volume) no reason
  applies, and ``RigConfig.expect_no_drops`` makes any drop a violation.
* **lost in the window**: the rest, ``produced - delivered - dropped``. The SDK promises
  (README, "Durable") that a record whose ``log()`` returned more than
  ``spool_flush_interval`` before a crash is on disk and is sent after the restart; so a
  missing record is excused only if its run was SIGKILLed less than ``durability_window``
  after its ``log()`` returned. The balance holds when
  ``0 <= lost_in_window <= |missing records inside a kill's window|``; every missing record
  outside all windows is listed as a violation (with how long before the kill it was logged).

Other invariants: no request id is stored twice (nor a record id, per node); every stored
record was produced (a SIGKILL may fall between ``log()`` returning and its ledger line, so a
killed run's next record number may be stored unledgered, and is reported as such); the
batches' record counts add up to the records table (payload and index agree); every run that
was not killed exits 0 after ``flush()`` returned True, without SDK internal errors; the
collector answers no 5xx other than 503 (back-pressure) and logs no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, func, select

from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.tables import batches, records
from monitor.storage.tables import nodes as nodes_table
from monitor.wire import DROP_REASONS
from tests.e2e.proxy import FaultyProxy

SENDER = Path(__file__).with_name("sender.py")
REPO = Path(__file__).resolve().parents[2]
MODEL = "pump-failure"  # what sender.py logs to


@dataclass(frozen=True)
class RigConfig:
    """The rig's figures. Times are seconds; kill times are drawn in ``[1, duration]``."""

    senders: int = 3
    records_per_sender: int = 2_000
    #: Records per second per sender while logging.
    rate: float = 75.0
    #: The span over which the kills are scheduled (production should last about as long).
    duration: float = 25.0
    collector_kills: int = 10
    sdk_kills: int = 4
    drop_rate: float = 0.2
    reset_rate: float = 0.05
    seed: int = 0
    #: How long a killed collector stays down before it is started again: uniform in [0, this].
    max_collector_downtime: float = 1.0
    #: A collector serves at least this long before it is killed again.
    min_collector_uptime: float = 0.5
    #: How long a killed sender stays down: uniform in [0, this].
    max_sdk_downtime: float = 1.0
    #: The SDK's ``spool_flush_interval`` in the senders, hence the durability window.
    durability_window: float = 0.5
    #: How the proxy answers while the collector is down.
    upstream_down: Literal["502", "close"] = "502"
    #: Deadline for every node's last run to finish and flush after the schedules are done.
    final_timeout: float = 240.0
    #: Any drop counted by the SDK is a violation (nothing in the rig should cause one).
    expect_no_drops: bool = True


@dataclass
class Run:
    """One sender process: a node's run number ``index``."""

    node: str
    index: int
    count: int
    process: subprocess.Popen[bytes]
    ledger: Path
    stats: Path
    started_at: float
    killed_at: float | None = None

    @property
    def prefix(self) -> str:
        return f"{self.node}.r{self.index}"


@dataclass
class NodeFigures:
    """One node's books."""

    node: str
    runs: int
    killed_runs: int
    produced: int
    delivered: int
    dropped: dict[str, int]
    lost_in_window: int
    missing_in_window: int  # missing records whose run was killed within the window
    #: Seconds between the oldest missing record's log() and its run's SIGKILL (0: none lost).
    oldest_loss: float
    lost_outside_window: list[str]
    unledgered_stored: list[str]
    counted_delivered: int  # the SDK's own "delivered" counters (duplicates included)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass
class RigResult:
    """What happened and whether the invariants held (``violations`` empty)."""

    config: RigConfig
    backend: str
    seconds: float
    logging_seconds: float
    collector_kills: list[float]
    sdk_kills: list[tuple[str, int, float]]
    skipped_sdk_kills: int
    proxy: dict[str, Any]
    nodes: list[NodeFigures]
    stored: int
    duplicates: list[str]
    phantoms: list[str]
    batch_records: int
    violations: list[str] = field(default_factory=list)

    @property
    def produced(self) -> int:
        return sum(n.produced for n in self.nodes)

    @property
    def delivered(self) -> int:
        return sum(n.delivered for n in self.nodes)

    @property
    def dropped(self) -> dict[str, int]:
        total = dict.fromkeys(DROP_REASONS, 0)
        for n in self.nodes:
            for reason, count in n.dropped.items():
                total[reason] = total.get(reason, 0) + count
        return total

    @property
    def lost_in_window(self) -> int:
        return sum(n.lost_in_window for n in self.nodes)

    @property
    def lost_outside_window(self) -> int:
        return sum(len(n.lost_outside_window) for n in self.nodes)

    def figures(self) -> dict[str, Any]:
        """The headline figures as plain data (for a report or a JSON file)."""
        return {
            "backend": self.backend,
            "seed": self.config.seed,
            "senders": self.config.senders,
            "produced": self.produced,
            "delivered": self.delivered,
            "stored": self.stored,
            "duplicates": len(self.duplicates),
            "lost_in_window": self.lost_in_window,
            "lost_outside_window": self.lost_outside_window,
            "oldest_loss_s": round(max((n.oldest_loss for n in self.nodes), default=0.0), 3),
            "unledgered_stored": sum(len(n.unledgered_stored) for n in self.nodes),
            "dropped": {k: v for k, v in self.dropped.items() if v},
            "dropped_total": sum(self.dropped.values()),
            "collector_kills": len(self.collector_kills),
            "sdk_kills": len(self.sdk_kills),
            "skipped_sdk_kills": self.skipped_sdk_kills,
            "proxy": self.proxy,
            "seconds": round(self.seconds, 1),
            "logging_seconds": round(self.logging_seconds, 1),
            "violations": len(self.violations),
        }

    def summary(self) -> str:
        lines = [f"kill rig on {self.backend}: " + json.dumps(self.figures())]
        for n in self.nodes:
            lines.append(
                f"  {n.node}: runs {n.runs} (killed {n.killed_runs}), produced {n.produced}, "
                f"delivered {n.delivered}, dropped {n.dropped_total}, lost in window "
                f"{n.lost_in_window}/{n.missing_in_window} (oldest logged {n.oldest_loss:.3f} s "
                f"before its kill), outside {len(n.lost_outside_window)}"
            )
        lines += [f"  VIOLATION: {v}" for v in self.violations[:40]]
        return "\n".join(lines)


def read_ledger(path: Path) -> dict[str, float]:
    """request id -> when its ``log()`` returned; a line cut by SIGKILL is left out."""
    entries: dict[str, float] = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines(keepends=True):
        parts = line.split()
        if not line.endswith("\n") or len(parts) != 2:
            continue
        with contextlib.suppress(ValueError):
            entries[parts[0]] = float(parts[1])
    return entries


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class KillableCollector:
    """``edge-monitor serve`` on a fixed loopback port, which the rig SIGKILLs and restarts."""

    def __init__(self, db_url: str, port: int, log_path: Path) -> None:
        self.db_url = db_url
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_at = 0.0

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "MONITOR_DATABASE_URL": self.db_url, "MONITOR_LOG_LEVEL": "WARNING"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "serve", "--port", str(self.port)],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"collector exited with {self.process.returncode}; see {self.log_path}"
                )
            if _http_ok(f"http://127.0.0.1:{self.port}/readyz"):
                self.ready_at = time.monotonic()
                return
            time.sleep(0.05)
        raise RuntimeError(f"collector not ready after {timeout} s; see {self.log_path}")

    def kill(self) -> float:
        """SIGKILL; returns when (``time.time()``) the signal was sent."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        self.process.wait()
        self.process = None
        return killed_at

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def register(engine: Engine, count: int) -> dict[str, str]:
    """The model and ``count`` nodes; node name -> token."""
    with begin_write(engine) as conn:
        if models.find_model(conn, MODEL) is None:
            models.add_model(conn, MODEL)
        return {
            f"node-{i}": nodes.add_node(conn, f"node-{i}", site=f"site-{i % 2}")[1]
            for i in range(1, count + 1)
        }


class Rig:
    """One run of the rig; ``run()`` returns the ``RigResult``."""

    def __init__(
        self,
        engine: Engine,
        db_url: str,
        workdir: Path,
        config: RigConfig,
        *,
        backend: str = "",
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.workdir = workdir
        self.backend = backend or engine.dialect.name
        self.progress = progress or (lambda _msg: None)
        self.collector = KillableCollector(db_url, free_port(), workdir / "collector.log")
        self.proxy = FaultyProxy(
            self.collector.port,
            drop_rate=config.drop_rate,
            reset_rate=config.reset_rate,
            seed=config.seed,
            upstream_down=config.upstream_down,
        )
        self.tokens: dict[str, str] = {}
        self.runs: dict[str, list[Run]] = {}
        self.lock = threading.Lock()  # guards self.runs against the SDK chaos thread
        self.collector_kills: list[float] = []
        self.sdk_kills: list[tuple[str, int, float]] = []
        self.skipped_sdk_kills = 0
        self.failures: list[str] = []  # chaos thread errors

    # -- processes ---------------------------------------------------------------------------

    def _start_run(self, node: str) -> Run:
        runs = self.runs.setdefault(node, [])
        index = len(runs)
        logged = sum(len(read_ledger(r.ledger)) for r in runs)
        count = max(0, self.config.records_per_sender - logged)
        base = self.workdir / node
        ledger = base.with_name(f"{node}.r{index}.ledger")
        stats = base.with_name(f"{node}.r{index}.stats.json")
        args = [
            sys.executable,
            str(SENDER),
            "--url",
            self.proxy.url,
            "--token",
            self.tokens[node],
            "--node",
            node,
            "--id-prefix",
            f"{node}.r{index}",
            "--count",
            str(count),
            "--rate",
            str(self.config.rate),
            "--ledger",
            str(ledger),
            "--stats",
            str(stats),
            "--spool",
            str(base.with_name(f"{node}.spool")),
            "--spool-flush-interval",
            str(self.config.durability_window),
            "--flush-timeout",
            str(self.config.final_timeout),
        ]
        out = base.with_name(f"{node}.r{index}.out")
        with out.open("wb") as stdout, base.with_name(f"{node}.r{index}.err").open("wb") as err:
            process = subprocess.Popen(args, stdout=stdout, stderr=err, cwd=REPO)
        run = Run(node, index, count, process, ledger, stats, time.time())
        runs.append(run)
        return run

    # -- chaos -------------------------------------------------------------------------------

    def _collector_chaos(self, times: list[float], downtimes: list[float], t0: float) -> None:
        try:
            for at, down in zip(times, downtimes, strict=True):
                earliest = self.collector.ready_at + self.config.min_collector_uptime
                time.sleep(max(0.0, t0 + at - time.monotonic(), earliest - time.monotonic()))
                self.collector_kills.append(self.collector.kill())
                self.progress(f"collector killed ({len(self.collector_kills)}/{len(times)})")
                time.sleep(down)
                self.collector.start()
        except Exception as exc:  # reported as a violation; the rig still finishes and checks
            self.failures.append(f"collector chaos failed: {exc!r}")
            with contextlib.suppress(Exception):
                if self.collector.process is None:
                    self.collector.start()

    def _sdk_chaos(
        self, times: list[float], picks: list[float], downtimes: list[float], t0: float
    ) -> None:
        try:
            for at, pick, down in zip(times, picks, downtimes, strict=True):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                with self.lock:
                    alive = [
                        runs[-1] for runs in self.runs.values() if runs[-1].process.poll() is None
                    ]
                if not alive:
                    self.skipped_sdk_kills += 1
                    continue
                run = alive[int(pick * len(alive))]
                run.process.send_signal(signal.SIGKILL)
                run.killed_at = time.time()
                run.process.wait()
                self.sdk_kills.append((run.node, run.index, run.killed_at))
                self.progress(f"{run.prefix} killed ({len(self.sdk_kills)}/{len(times)})")
                time.sleep(down)
                with self.lock:
                    self._start_run(run.node)
        except Exception as exc:
            self.failures.append(f"SDK chaos failed: {exc!r}")

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> RigResult:
        cfg = self.config
        rng = random.Random(cfg.seed)
        collector_times = sorted(rng.uniform(1.0, cfg.duration) for _ in range(cfg.collector_kills))
        collector_downs = [rng.uniform(0.0, cfg.max_collector_downtime) for _ in collector_times]
        sdk_times = sorted(rng.uniform(1.0, cfg.duration) for _ in range(cfg.sdk_kills))
        sdk_picks = [rng.random() for _ in sdk_times]
        sdk_downs = [rng.uniform(0.0, cfg.max_sdk_downtime) for _ in sdk_times]

        self.tokens = register(self.engine, cfg.senders)
        self.collector.start()
        self.proxy.start()
        started = time.monotonic()
        try:
            with self.lock:
                for node in self.tokens:
                    self._start_run(node)
            t0 = time.monotonic()
            chaos = [
                threading.Thread(
                    target=self._collector_chaos, args=(collector_times, collector_downs, t0)
                ),
                threading.Thread(
                    target=self._sdk_chaos, args=(sdk_times, sdk_picks, sdk_downs, t0)
                ),
            ]
            for thread in chaos:
                thread.start()
            for thread in chaos:
                thread.join()
            self.progress("schedules done; waiting for the last runs to flush")
            deadline = time.monotonic() + cfg.final_timeout + 30
            for runs in self.runs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    runs[-1].process.wait(timeout=max(0.0, deadline - time.monotonic()))
            first = min(r.started_at for runs in self.runs.values() for r in runs)
            logging_seconds = max(self._last_logged(runs) for runs in self.runs.values()) - first
        finally:
            for runs in self.runs.values():
                for r in runs:
                    if r.process.poll() is None:
                        self.failures.append(f"{r.prefix} still running at the deadline")
                        r.process.kill()
                        r.process.wait()
            self.proxy.close()
            self.collector.stop()
        seconds = time.monotonic() - started
        return self._check(seconds, logging_seconds)

    @staticmethod
    def _last_logged(runs: list[Run]) -> float:
        return max((max(read_ledger(r.ledger).values(), default=0.0) for r in runs), default=0.0)

    # -- the books ---------------------------------------------------------------------------

    def _stored(self) -> tuple[list[tuple[str, str, str]], int]:
        """(node, record id, request id) of every stored record, and Σ batches.n_records."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(nodes_table.c.name, records.c.uid, records.c.request_id).join(
                    nodes_table, nodes_table.c.id == records.c.node_id
                )
            ).all()
            batch_records = conn.execute(
                select(func.coalesce(func.sum(batches.c.n_records), 0))
            ).scalar_one()
        return [(r[0], r[1], r[2]) for r in rows], int(batch_records)

    def _check(self, seconds: float, logging_seconds: float) -> RigResult:
        cfg = self.config
        violations = list(self.failures)
        stored_rows, batch_records = self._stored()
        by_request = Counter(rid for _, _, rid in stored_rows)
        by_uid = Counter((node, uid) for node, uid, _ in stored_rows)
        duplicates = sorted(rid for rid, n in by_request.items() if n > 1)
        duplicates += sorted(f"{node}/{uid}" for (node, uid), n in by_uid.items() if n > 1)
        if duplicates:
            violations.append(f"{len(duplicates)} stored twice, e.g. {duplicates[:5]}")
        if batch_records != len(stored_rows):
            violations.append(
                f"batches count {batch_records} records, the records table {len(stored_rows)}"
            )
        server_errors = {
            status: n for status, n in self.proxy.stats.statuses.items() if status >= 500
        }
        if set(server_errors) - {503}:  # 503 is back-pressure, by design; any other is a bug
            violations.append(f"the collector answered server errors: {server_errors}")
        log = self.collector.log_path.read_text(errors="replace")
        if "Traceback" in log:
            at = log.index("Traceback")
            first = log[max(0, at - 200) : at + 1500]
            violations.append(
                f"the collector logged {log.count('Traceback')} traceback(s): {first}"
            )
        if len(self.collector_kills) != cfg.collector_kills:
            violations.append(
                f"{len(self.collector_kills)} collector kills of {cfg.collector_kills} scheduled"
            )
        if len(self.sdk_kills) != cfg.sdk_kills:
            violations.append(
                f"{len(self.sdk_kills)} SDK kills of {cfg.sdk_kills} scheduled (the others found "
                "no sender running: make the senders log for longer than the schedule)"
            )
        stored = set(by_request)
        produced_all: set[str] = set()
        figures = []
        for node, runs in self.runs.items():
            books = [
                RunBooks(
                    r.prefix, read_ledger(r.ledger), r.killed_at, self._run_stats(r, violations)
                )
                for r in runs
            ]
            fig, problems = node_books(
                node,
                books,
                stored,
                window=cfg.durability_window,
                expect_no_drops=cfg.expect_no_drops,
            )
            violations += problems
            figures.append(fig)
            for r in runs:
                produced_all.update(read_ledger(r.ledger))
        unledgered = {rid for f in figures for rid in f.unledgered_stored}
        phantoms = sorted(stored - produced_all - unledgered)
        if phantoms:
            violations.append(f"{len(phantoms)} stored but never logged, e.g. {phantoms[:5]}")
        return RigResult(
            config=cfg,
            backend=self.backend,
            seconds=seconds,
            logging_seconds=logging_seconds,
            collector_kills=self.collector_kills,
            sdk_kills=self.sdk_kills,
            skipped_sdk_kills=self.skipped_sdk_kills,
            proxy=self.proxy.stats.as_dict(),
            nodes=figures,
            stored=len(stored_rows),
            duplicates=duplicates,
            phantoms=phantoms,
            batch_records=batch_records,
            violations=violations,
        )

    @staticmethod
    def _run_stats(run: Run, violations: list[str]) -> dict[str, Any]:
        """The run's final stats (a clean exit) or its last snapshot (a killed run)."""
        try:
            stats: dict[str, Any] = json.loads(run.stats.read_text())
        except (OSError, ValueError):
            stats = {}
        if run.killed_at is None:
            if run.process.returncode != 0 or not stats.get("final"):
                err = run.stats.with_name(f"{run.prefix}.err")
                tail = err.read_text()[-2000:] if err.exists() else ""
                violations.append(
                    f"{run.prefix} exited {run.process.returncode} "
                    f"(flushed: {stats.get('flushed')}): {tail}"
                )
            elif not stats.get("flushed"):
                violations.append(f"{run.prefix}: flush() did not return True")
        if stats.get("errors") or stats.get("internal_errors"):
            violations.append(f"{run.prefix}: SDK internal errors {stats.get('errors')}")
        return stats


@dataclass(frozen=True)
class RunBooks:
    """What one run left behind: its ledger, when it was SIGKILLed (if it was), its stats()."""

    prefix: str
    ledger: dict[str, float]
    killed_at: float | None
    stats: dict[str, Any]


def node_books(
    node: str, runs: list[RunBooks], stored: set[str], *, window: float, expect_no_drops: bool
) -> tuple[NodeFigures, list[str]]:
    """One node's figures from its runs and the stored request ids, and the violations found.

    See the module docstring for the accounting.
    """
    violations: list[str] = []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    counted_delivered = produced = delivered = missing = missing_in_window = 0
    oldest_loss = 0.0
    outside: list[str] = []
    unledgered: list[str] = []
    for run in runs:
        for reason, n in (run.stats.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + int(n)
        counted_delivered += int(run.stats.get("delivered", 0))
        produced += len(run.ledger)
        for rid, returned_at in run.ledger.items():
            if rid in stored:
                delivered += 1
            elif run.killed_at is None:
                missing += 1
                outside.append(f"{rid} (its run was not killed)")
            elif returned_at > run.killed_at - window:
                missing += 1
                missing_in_window += 1
                oldest_loss = max(oldest_loss, run.killed_at - returned_at)
            else:
                missing += 1
                outside.append(
                    f"{rid} (logged {run.killed_at - returned_at:.3f} s before the kill)"
                )
        if run.killed_at is not None:
            # SIGKILL may fall between log() returning and the ledger line being written.
            numbers = [int(rid.rsplit("-", 1)[1]) for rid in run.ledger]
            following = f"{run.prefix}-{max(numbers, default=-1) + 1}"
            if following in stored:
                unledgered.append(following)
    dropped_total = sum(dropped.values())
    lost_in_window = missing - dropped_total
    drops = {k: v for k, v in dropped.items() if v}
    if expect_no_drops and dropped_total:
        violations.append(f"{node}: the SDK dropped records: {drops}")
    if lost_in_window < 0:
        violations.append(f"{node}: {dropped_total} counted dropped but only {missing} missing")
    elif lost_in_window > missing_in_window:
        violations.append(
            f"{node}: {missing} produced records are not stored, {dropped_total} were counted "
            f"dropped and {missing_in_window} were logged within {window} s before their run's "
            f"SIGKILL; lost outside that window: {outside[:5]}"
        )
    figures = NodeFigures(
        node=node,
        runs=len(runs),
        killed_runs=sum(r.killed_at is not None for r in runs),
        produced=produced,
        delivered=delivered,
        dropped=drops,
        lost_in_window=max(0, lost_in_window),
        missing_in_window=missing_in_window,
        oldest_loss=oldest_loss,
        lost_outside_window=outside,
        unledgered_stored=unledgered,
        counted_delivered=counted_delivered,
    )
    return figures, violations


def run_rig(
    engine: Engine,
    db_url: str,
    workdir: Path,
    config: RigConfig,
    *,
    backend: str = "",
    progress: Callable[[str], None] | None = None,
) -> RigResult:
    """Run the rig once against a migrated, empty database; see the module docstring."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Rig(engine, db_url, workdir, config, backend=backend, progress=progress).run()
