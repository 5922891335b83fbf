"""The data path end to end: SDK processes -> a collector process -> SQL, exactly once,
through collector outages and SDK crashes, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine

from tests.e2e.conftest import (
    CollectorProcess,
    finish,
    ledger,
    register_nodes,
    start_sender,
    stored_request_ids,
)

SPOOL_FLUSH_INTERVAL = 0.5  # what tests/e2e/sender.py configures


def test_three_nodes_ship_every_record_exactly_once(
    engine: Engine, collector_process: CollectorProcess, tmp_path: Path
) -> None:
    tokens = register_nodes(engine, 3)

    senders = [
        start_sender(collector_process, node, token, tmp_path, count=5_000)
        for node, token in tokens.items()
    ]
    reports = [finish(sender) for sender in senders]

    stored = stored_request_ids(engine)
    assert len(stored) == 15_000
    assert set(stored) == {f"{node}-{i}" for node in tokens for i in range(5_000)}
    for report in reports:
        assert report["stats"]["delivered"] == 5_000
        assert sum(report["stats"]["dropped"].values()) == 0


def test_a_collector_outage_of_ten_seconds_loses_and_duplicates_nothing(
    engine: Engine, collector_process: CollectorProcess, tmp_path: Path
) -> None:
    tokens = register_nodes(engine, 2)
    senders = [
        start_sender(collector_process, node, token, tmp_path, count=3_000, rate=200)
        for node, token in tokens.items()
    ]
    time.sleep(3)

    collector_process.stop()
    time.sleep(10)
    collector_process.start()
    reports = [finish(sender) for sender in senders]

    stored = stored_request_ids(engine)
    duplicates = [rid for rid, n in Counter(stored).items() if n > 1]
    assert duplicates == []
    assert set(stored) == {f"{node}-{i}" for node in tokens for i in range(3_000)}
    for report in reports:
        assert report["stats"]["delivered"] == 3_000


def test_an_sdk_killed_mid_stream_loses_nothing_beyond_the_flush_window(
    engine: Engine, collector_process: CollectorProcess, tmp_path: Path
) -> None:
    ((node, token),) = register_nodes(engine, 1).items()
    sender = start_sender(collector_process, node, token, tmp_path, count=100_000, rate=1_000)
    time.sleep(3)

    killed_at = time.time()
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait()
    if sender.stdout is not None:
        sender.stdout.close()
    logged = ledger(tmp_path, node)
    restarted = start_sender(collector_process, node, token, tmp_path, count=0)
    finish(restarted)

    stored = stored_request_ids(engine)
    assert len(stored) == len(set(stored)), "a record was stored twice"
    promised = {
        rid for rid, returned in logged.items() if returned < killed_at - SPOOL_FLUSH_INTERVAL
    }
    assert len(promised) > 1_000
    assert promised <= set(stored)
    assert set(stored) <= set(logged)
