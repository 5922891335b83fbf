"""The kill rig, short form: SDK processes and the collector SIGKILLed at random behind a proxy
that drops answers and resets connections; every promised record is stored exactly once and
every produced record is accounted for. The long form is bench/kill_rig.py."""

from __future__ import annotations

import gzip
import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from monitor import wire
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.storage.tables import records
from tests.e2e.proxy import RESET_POINTS, FaultyProxy
from tests.e2e.rig import RigConfig, RunBooks, free_port, node_books, register, run_rig

#: The CI figures: about 35 s of chaos per backend on two cores. Senders log for ~27 s, longer
#: than the 22 s the kills are drawn in, so every SDK kill finds a sender running.
SHORT = RigConfig(
    senders=3,
    records_per_sender=2_000,
    rate=75.0,
    duration=22.0,
    collector_kills=10,
    sdk_kills=4,
    drop_rate=0.2,
    reset_rate=0.05,
    seed=14,
)


def test_killed_collectors_and_sdks_behind_a_lossy_proxy_lose_and_duplicate_nothing(
    engine: Engine, db_url: str, backend: str, tmp_path: Path
) -> None:
    """Three senders log 2,000 records each through a proxy that drops 20% of the collector's
    answers after the collector gave them and resets 5% of connections; the collector is
    SIGKILLed 10 times and a sender 4 times (each restarted on the same spool), at seeded
    random times.

    Accounting, per node: *produced* = ledger lines (records whose ``log()`` returned);
    *delivered* = those stored; *dropped* = the SDK's drop counters summed over the node's
    runs (final ``stats()`` of a run that exited, the last snapshot of a killed one; none
    are expected here: sample rate 1, valid records, caps far away); the rest is *lost in
    the window*, and it must not exceed the number of missing records logged less than
    ``spool_flush_interval`` (0.5 s, README "Durable") before their run's SIGKILL. So
    produced = delivered + Σ drops + lost in window, and every record outside a kill's
    window is stored. No request id (nor record id) is stored twice; nothing is stored that
    was not produced; each node's last run exits after ``flush()`` returned True.
    """
    result = run_rig(engine, db_url, tmp_path / "rig", SHORT, backend=backend)

    assert result.violations == [], result.summary()
    assert result.produced == SHORT.senders * SHORT.records_per_sender
    assert result.duplicates == []
    assert result.lost_outside_window == 0
    assert result.produced == result.delivered + sum(result.dropped.values()) + (
        result.lost_in_window
    )
    assert result.stored == result.delivered + sum(len(n.unledgered_stored) for n in result.nodes)
    # The faults really happened: every kill, dropped answers, resets, a collector found down.
    assert len(result.collector_kills) == SHORT.collector_kills
    assert len(result.sdk_kills) == SHORT.sdk_kills
    assert result.proxy["dropped_answers"] > 0
    assert sum(result.proxy["resets"].values()) > 0
    assert result.proxy["upstream_down"] > 0


# --- the rig's books catch what they are meant to catch -------------------------------------


def books(ledger: dict[str, float], killed_at: float | None, **stats: object) -> RunBooks:
    return RunBooks("node-1.r0", ledger, killed_at, {"dropped": {}, "delivered": 0, **stats})


def test_the_books_excuse_only_records_logged_within_the_window_before_a_kill() -> None:
    ledger = {"node-1.r0-0": 100.0, "node-1.r0-1": 109.7, "node-1.r0-2": 109.9}
    run = books(ledger, killed_at=110.0)

    lost_in_window, violations = node_books(
        "node-1", [run], {"node-1.r0-0"}, window=0.5, expect_no_drops=True
    )
    lost_outside, outside_violations = node_books(
        "node-1", [run], {"node-1.r0-1", "node-1.r0-2"}, window=0.5, expect_no_drops=True
    )

    assert violations == []
    assert (lost_in_window.produced, lost_in_window.delivered) == (3, 1)
    assert lost_in_window.lost_in_window == 2
    assert lost_outside.lost_outside_window == ["node-1.r0-0 (logged 10.000 s before the kill)"]
    assert len(outside_violations) == 1


def test_the_books_flag_a_missing_record_of_a_run_that_was_not_killed() -> None:
    run = books({"node-1.r0-0": 100.0, "node-1.r0-1": 100.1}, killed_at=None)

    figures, violations = node_books(
        "node-1", [run], {"node-1.r0-0"}, window=0.5, expect_no_drops=True
    )

    assert figures.lost_outside_window == ["node-1.r0-1 (its run was not killed)"]
    assert len(violations) == 1


def test_the_books_count_drops_by_reason_in_the_balance() -> None:
    run = books({"node-1.r0-0": 100.0, "node-1.r0-1": 100.1}, None, dropped={"rejected": 1})

    figures, violations = node_books(
        "node-1", [run], {"node-1.r0-0"}, window=0.5, expect_no_drops=False
    )
    _, strict = node_books("node-1", [run], {"node-1.r0-0"}, window=0.5, expect_no_drops=True)
    _, overcounted = node_books(
        "node-1", [run], {"node-1.r0-0", "node-1.r0-1"}, window=0.5, expect_no_drops=False
    )

    assert violations == []
    assert figures.dropped == {"rejected": 1}
    assert figures.produced == figures.delivered + figures.dropped_total + figures.lost_in_window
    assert strict == ["node-1: the SDK dropped records: {'rejected': 1}"]
    assert overcounted == ["node-1: 1 counted dropped but only 0 missing"]


def test_the_books_accept_the_unledgered_record_a_sigkill_can_leave_stored() -> None:
    run = books({"node-1.r0-0": 100.0}, killed_at=100.2)

    figures, violations = node_books(
        "node-1", [run], {"node-1.r0-0", "node-1.r0-1"}, window=0.5, expect_no_drops=True
    )

    assert violations == []
    assert figures.unledgered_stored == ["node-1.r0-1"]


# --- the proxy does what the rig says it does -----------------------------------------------


def post_batch(n: int = 3) -> tuple[bytes, list[str]]:
    """A gzip records batch of ``n`` records for ``model pump-failure``, and their ids."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    body = wire.records_body(
        uuid.uuid4().hex,
        "pump-failure",
        "1",
        [
            {"id": rid, "ts": 1_700_000_000.0, "features": {"rpm": 1450}, "prediction": "ok"}
            for rid in ids
        ],
    )
    return gzip.compress(json.dumps(body).encode()), ids


def send(port: int, token: str, body: bytes) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        wire.RECORDS_PATH,
        body=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def stored_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(records)).scalar_one())


@pytest.fixture
def collector(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[BackgroundCollector]:
    with BackgroundCollector(Settings(database_url=db_url, data_dir=tmp_path)) as running:
        yield running


def port_of(collector: BackgroundCollector) -> int:
    return int(collector.url.rsplit(":", 1)[1])


def test_a_dropped_answer_is_stored_by_the_collector_and_never_reaches_the_client(
    engine: Engine, collector: BackgroundCollector
) -> None:
    token = register(engine, 1)["node-1"]
    body, ids = post_batch()

    with FaultyProxy(port_of(collector), drop_rate=1.0) as proxy:
        with pytest.raises(http.client.RemoteDisconnected):
            send(proxy.port, token, body)
        stats = proxy.stats.as_dict()
    with FaultyProxy(port_of(collector)) as proxy:
        again = send(proxy.port, token, body)

    assert stored_count(engine) == len(ids)
    assert (stats["forwarded"], stats["dropped_answers"], stats["answered"]) == (1, 1, 0)
    assert again.status == 200


def test_a_reset_connection_gets_no_answer_and_stores_at_most_the_whole_batch(
    engine: Engine, collector: BackgroundCollector
) -> None:
    token = register(engine, 1)["node-1"]

    with FaultyProxy(port_of(collector), reset_rate=1.0, seed=3) as proxy:
        for _ in range(12):
            body, _ = post_batch()
            with pytest.raises((ConnectionError, http.client.HTTPException)):
                send(proxy.port, token, body)
        resets = proxy.stats.as_dict()["resets"]

    assert all(resets[point] > 0 for point in RESET_POINTS)  # the seed draws all three
    assert sum(resets.values()) == 12
    assert stored_count(engine) % 3 == 0  # whole batches or nothing
    assert stored_count(engine) == 3 * resets["after"]


def test_the_proxy_answers_502_with_the_error_envelope_while_the_collector_is_down() -> None:
    with FaultyProxy(free_port()) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("POST", wire.RECORDS_PATH, body=b"{}")
        resp = conn.getresponse()
        envelope = json.loads(resp.read())
        conn.close()

    assert resp.status == 502
    assert envelope["error"]["code"] == "bad_gateway"
    assert set(envelope["error"]) == {"code", "message", "details"}


def test_the_proxys_decisions_follow_its_seed_at_its_rates() -> None:
    def decisions(seed: int) -> list[tuple[str, str]]:
        proxy = FaultyProxy(1, drop_rate=0.2, reset_rate=0.05, seed=seed)
        try:
            return [proxy.decide() for _ in range(20_000)]
        finally:
            proxy.close()

    first, same, other = decisions(7), decisions(7), decisions(8)
    shares = {kind: sum(d[0] == kind for d in first) / len(first) for kind in ("drop", "reset")}

    assert first == same
    assert first != other
    assert shares["drop"] == pytest.approx(0.2, abs=0.015)
    assert shares["reset"] == pytest.approx(0.05, abs=0.007)
