"""The delivery job against real loopback receivers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.alerts.receiver import Receiver
from monitor.alerts.signing import new_secret
from monitor.config import Settings
from monitor.jobs import deliveries
from monitor.jobs.deliveries import MAX_ATTEMPTS, deliver_due, retry_wait
from monitor.storage import webhooks
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow

SECRET = new_secret()
LOOPBACK = ["127.0.0.1/32"]


def _settings(tmp_path: Path, db_url: str, **kw: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "data_dir": tmp_path,
        "webhook_allowed_networks": LOOPBACK,
        "webhook_timeout_seconds": 5.0,
    }
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


def _add(engine: Engine, url: str, name: str = "ops", now: datetime | None = None) -> None:
    with begin_write(engine) as conn:
        webhooks.upsert_endpoint(conn, name=name, url=url, secret=SECRET, now=now or utcnow())


def _enqueue(engine: Engine, message_id: str, now: datetime, kind: str = "alert.fired") -> None:
    body = json.dumps({"type": kind, "text": f"{kind} {message_id}"}).encode()
    with begin_write(engine) as conn:
        webhooks.enqueue(
            conn,
            message_id=message_id,
            event_type=kind,
            body=body,
            endpoints=None,
            event_id=None,
            now=now,
        )


def _log(engine: Engine) -> list[webhooks.Delivery]:
    with engine.connect() as conn:
        return webhooks.delivery_log(conn)


def _endpoint(engine: Engine, name: str = "ops") -> webhooks.Endpoint:
    with engine.connect() as conn:
        endpoint = webhooks.endpoint_by_name(conn, name)
    assert endpoint is not None
    return endpoint


def test_the_schedule_waits_longer_each_time_with_jitter_then_gives_up() -> None:
    low = [retry_wait(n, rand=lambda a, b: a) for n in range(1, MAX_ATTEMPTS)]
    high = [retry_wait(n, rand=lambda a, b: b) for n in range(1, MAX_ATTEMPTS)]
    assert low[0] == timedelta(seconds=4) and high[0] == timedelta(seconds=6)
    assert high[-1] == timedelta(hours=12)
    assert all(a is not None and b is not None and a < b for a, b in zip(low, high, strict=True))
    assert retry_wait(MAX_ATTEMPTS) is None
    assert retry_wait(1, 3600.0, rand=lambda a, b: 1.0) == timedelta(hours=1)
    assert retry_wait(4, 60.0, rand=lambda a, b: 1.0) == timedelta(hours=2)
    assert retry_wait(1, 10 * 86400.0, rand=lambda a, b: 1.0) == timedelta(hours=24)


def test_a_receiver_down_for_a_while_gets_the_message_once_it_is_back(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, db_url)
    first = Receiver(SECRET).start()
    port = first.port
    first.close()  # down: connections are refused
    t0 = utcnow()
    _add(engine, f"http://127.0.0.1:{port}/hook", now=t0)
    _enqueue(engine, "msg_down", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=3)) == 0
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=7)) == 1
    (pending,) = _log(engine)
    assert pending.message.status == "pending" and pending.message.attempts == 2
    assert all(a.status_code is None and "127.0.0.1" in (a.error or "") for a in pending.attempts)
    with Receiver(SECRET, port=port) as back:
        assert deliver_due(engine, settings, now=t0 + timedelta(minutes=10)) == 1
        assert [m.message_id for m in back.received] == ["msg_down"]
    (done,) = _log(engine)
    assert done.message.status == "delivered"
    assert [a.status_code for a in done.attempts] == [None, None, 204]
    assert _endpoint(engine).failing_since is None


def test_a_worker_killed_mid_delivery_is_resumed_once_its_claim_expires(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url, webhook_timeout_seconds=30.0)
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_killed", t0)
    receiver.stall_seconds = 120.0
    script = (
        "import sys\n"
        "from monitor.config import Settings\n"
        "from monitor.jobs.deliveries import deliver_due\n"
        "from monitor.storage.engine import make_engine\n"
        "settings = Settings(database_url=sys.argv[1], data_dir=sys.argv[2],\n"
        "    webhook_allowed_networks=['127.0.0.1/32'], webhook_timeout_seconds=30)\n"
        "deliver_due(make_engine(sys.argv[1]), settings, owner='doomed')\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, db_url, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 120
        while receiver.requests == 0 and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests == 1, "the worker never reached the receiver"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    (claimed,) = _log(engine)
    assert claimed.message.status == "delivering"
    assert claimed.message.claimed_by == "doomed"
    assert claimed.message.attempts == 1
    receiver.stall_seconds = 0.0
    # Nothing is held open by the dead worker: another one writes at once, but waits for the
    # claim to expire before it sends the message again.
    assert deliver_due(engine, settings, owner="survivor") == 0
    later = utcnow() + timedelta(seconds=2 * settings.webhook_timeout_seconds + 1)
    assert deliver_due(engine, settings, owner="survivor", now=later) == 1
    (done,) = _log(engine)
    assert done.message.status == "delivered"
    assert done.message.attempts == 2
    assert [a.attempt for a in done.attempts] == [2]  # the killed attempt left no answer
    assert [m.message_id for m in receiver.received] == ["msg_killed"]


def test_a_receiver_deduplicating_by_webhook_id_sees_each_transition_once(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url, webhook_timeout_seconds=0.5)
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_fired", t0, "alert.fired")
    # The receiver takes it but answers too late: we cannot know, so we send it again.
    receiver.stall_seconds = 1.0
    assert deliver_due(engine, settings, now=t0) == 1
    (late,) = _log(engine)
    assert late.message.status == "pending"
    assert "timed out" in (late.attempts[0].error or "")
    receiver.stall_seconds = 0.0
    _enqueue(engine, "msg_fired", t0, "alert.fired")  # re-analysis: not queued again
    _enqueue(engine, "msg_updated", t0, "alert.updated")
    _enqueue(engine, "msg_resolved", t0, "alert.resolved")
    assert deliver_due(engine, settings, now=t0 + timedelta(seconds=10)) == 3
    deadline = time.monotonic() + 30
    while receiver.deliveries < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the stalled first answer finishes on the receiver's own thread
    assert receiver.deliveries == 4
    assert sorted(m.message_id for m in receiver.received) == [
        "msg_fired",
        "msg_resolved",
        "msg_updated",
    ]
    assert {d.message.status for d in _log(engine)} == {"delivered"}


def test_a_redirect_is_a_failed_attempt(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url)
    receiver.status = 302
    receiver.answer_headers = {"location": "https://example.com/elsewhere"}
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_redirected", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    (entry,) = _log(engine)
    assert entry.message.status == "pending"
    assert entry.attempts[0].status_code == 302
    assert "redirects are not followed" in (entry.attempts[0].error or "")
    assert receiver.received == []
    assert _endpoint(engine).failing_since == t0


def test_retry_after_is_honoured_when_longer_than_the_schedule(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url)
    receiver.status = 503
    receiver.answer_headers = {"retry-after": "3600"}
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_busy", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    (entry,) = _log(engine)
    assert entry.attempts[0].retry_after_seconds == 3600.0
    assert entry.message.next_attempt_at == t0 + timedelta(hours=1)
    assert deliver_due(engine, settings, now=t0 + timedelta(minutes=59)) == 0
    receiver.status = 204
    assert deliver_due(engine, settings, now=t0 + timedelta(hours=1)) == 1
    assert [m.message_id for m in receiver.received] == ["msg_busy"]


def test_a_410_disables_the_endpoint_and_drops_its_pending_messages(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url)
    receiver.status = 410
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_a", t0)
    _enqueue(engine, "msg_b", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    endpoint = _endpoint(engine)
    assert not endpoint.enabled
    assert "410" in (endpoint.disabled_reason or "")
    assert {d.message.status for d in _log(engine)} == {"dropped"}
    _enqueue(engine, "msg_c", t0)
    assert deliver_due(engine, settings, now=t0 + timedelta(days=1)) == 0


def test_an_endpoint_failing_for_days_is_disabled(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url, webhook_disable_after_days=2)
    receiver.down = True
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_1", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    assert _endpoint(engine).failing_since == t0
    day1 = t0 + timedelta(days=1)
    assert deliver_due(engine, settings, now=day1) == 1
    assert _endpoint(engine).enabled
    day2 = t0 + timedelta(days=2)
    _enqueue(engine, "msg_2", day2)
    assert deliver_due(engine, settings, now=day2) == 1
    endpoint = _endpoint(engine)
    assert not endpoint.enabled
    assert "2.0 days" in (endpoint.disabled_reason or "")
    assert {d.message.status for d in _log(engine)} == {"dropped"}


def test_a_message_that_never_gets_through_is_given_up_after_the_schedule(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url, webhook_disable_after_days=30)
    receiver.down = True
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_doomed", t0)
    clock = t0
    for _ in range(MAX_ATTEMPTS):
        assert deliver_due(engine, settings, now=clock) == 1
        clock += timedelta(hours=13)
    (entry,) = _log(engine)
    assert entry.message.status == "failed"
    assert entry.message.last_error is not None
    assert entry.message.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempt(s)")
    assert len(entry.attempts) == MAX_ATTEMPTS
    assert deliver_due(engine, settings, now=clock + timedelta(days=1)) == 0


def test_a_target_refused_at_delivery_time_is_not_contacted(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url, webhook_allowed_networks=[])
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_x", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    (entry,) = _log(engine)
    assert entry.message.status == "pending"
    assert "127.0.0.1 is a loopback address" in (entry.attempts[0].error or "")
    assert receiver.requests == 0


def test_two_workers_deliver_each_message_once(
    engine: Engine, db_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, db_url)
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    for n in range(12):
        _enqueue(engine, f"msg_{n:02d}", t0)
    counts: list[int] = []
    workers = [
        threading.Thread(
            target=lambda o=owner: counts.append(deliver_due(engine, settings, owner=o))
        )
        for owner in ("w1", "w2")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(counts) == 12
    assert receiver.deliveries == 12
    assert len(receiver.received) == 12
    assert all(len(d.attempts) == 1 for d in _log(engine))


def test_each_outcome_is_one_log_line(
    engine: Engine,
    db_url: str,
    tmp_path: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(tmp_path, db_url)
    t0 = utcnow()
    _add(engine, receiver.url, now=t0)
    _enqueue(engine, "msg_logged", t0)
    with caplog.at_level("INFO", logger=deliveries.__name__):
        deliver_due(engine, settings, now=t0)
    lines = [r.getMessage() for r in caplog.records if r.name == deliveries.__name__]
    assert lines == [
        "webhook msg_logged (alert.fired) to ops: delivered " + lines[0].split("delivered ", 1)[1]
    ]
    assert "HTTP 204" in lines[0]


def test_an_endpoint_that_does_not_answer_costs_one_attempt_per_pass(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, db_url)
    first = Receiver(SECRET).start()
    port = first.port
    first.close()
    t0 = utcnow()
    _add(engine, f"http://127.0.0.1:{port}/", now=t0)
    for n in range(3):
        _enqueue(engine, f"msg_{n}", t0)
    assert deliver_due(engine, settings, now=t0) == 1
    log = _log(engine)
    assert sorted(len(d.attempts) for d in log) == [0, 0, 1]
    assert len({d.message.next_attempt_at for d in log}) == 1  # they wait together
    with Receiver(SECRET, port=port) as back:
        assert deliver_due(engine, settings, now=t0 + timedelta(minutes=1)) == 3
        assert sorted(m.message_id for m in back.received) == ["msg_0", "msg_1", "msg_2"]
