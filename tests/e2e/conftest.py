"""End-to-end fixtures: a collector *process* on a loopback port and SDK sender processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.tables import records

SENDER = Path(__file__).with_name("sender.py")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CollectorProcess:
    """`edge-monitor serve` in its own process; can be stopped and started again."""

    db_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "MONITOR_DATABASE_URL": self.db_url, "MONITOR_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "serve", "--port", str(self.port)], env=env, cwd=REPO
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"collector exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("collector did not become ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def collector_process(engine: Engine, db_url: str) -> Iterator[CollectorProcess]:
    collector = CollectorProcess(db_url)
    collector.start()
    yield collector
    collector.stop()


def register_nodes(engine: Engine, count: int) -> dict[str, str]:
    """Register the model and ``count`` nodes; returns node name -> token."""
    with begin_write(engine) as conn:
        models.add_model(conn, "pump-failure")
        return {
            f"node-{i}": nodes.add_node(conn, f"node-{i}", site=f"site-{i % 2}")[1]
            for i in range(1, count + 1)
        }


def start_sender(
    collector: CollectorProcess,
    node: str,
    token: str,
    tmp_path: Path,
    *,
    count: int,
    start: int = 0,
    rate: float = 0.0,
    spool: bool = True,
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        str(SENDER),
        "--url",
        collector.url,
        "--token",
        token,
        "--node",
        node,
        "--count",
        str(count),
        "--start",
        str(start),
        "--rate",
        str(rate),
        "--ledger",
        str(tmp_path / f"{node}.ledger"),
    ]
    if spool:
        args += ["--spool", str(tmp_path / f"{node}.spool")]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)


def finish(sender: subprocess.Popen[str], timeout: float = 120) -> dict:
    out, _ = sender.communicate(timeout=timeout)
    report = json.loads(out.strip().splitlines()[-1])
    assert sender.returncode == 0, report
    return report


def ledger(tmp_path: Path, node: str) -> dict[str, float]:
    """request id -> when its log() returned, for every record the node logged."""
    path = tmp_path / f"{node}.ledger"
    entries: dict[str, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by SIGKILL is a record whose log() did not return
            entries[parts[0]] = float(parts[1])
    return entries


def stored_request_ids(engine: Engine) -> list[str]:
    """Every stored record's request id (with repeats, if there were any)."""
    with engine.connect() as conn:
        return list(conn.execute(select(records.c.request_id)).scalars())
