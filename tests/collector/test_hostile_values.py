"""Values the storage cannot hold never reach it: the SDK refuses them before queueing (counted
``invalid``, never sent, so a node never stalls retrying), and the collector answers every body
holding one with a 4xx in the error envelope naming the field, never a 5xx, on SQLite and
PostgreSQL alike. The heartbeats our own SDK and runtime send pass the same rules."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.server import BackgroundCollector
from monitor.demo_model import paths
from monitor.fleet.machines import MachineFleetGenerator
from monitor.runtime import EdgeRuntime, InvalidInput
from monitor.sdk import Monitor
from monitor.sdk.errors import set_internal_error_hook
from monitor.storage.heartbeats import latest_heartbeat
from monitor.storage.nodes import get_node
from tests.collector.conftest import MODEL, auth, batch, record, stored

FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "spool_flush_interval": 0.05,
    "backoff_base": 0.01,
    "max_backoff": 0.05,
    "heartbeat_interval": None,
    "timeout": 5.0,
    "spool_dir": False,
}


@pytest.fixture(autouse=True)
def internal_errors() -> Iterator[list[BaseException]]:
    errors: list[BaseException] = []
    set_internal_error_hook(errors.append)
    yield errors
    set_internal_error_hook(None)
    if errors:
        pytest.fail(f"SDK internal errors: {errors!r}")


# --- the SDK refuses what the collector could not hold --------------------------------------


def test_values_the_storage_cannot_hold_never_leave_the_sdk_and_never_stall_it(
    collector: BackgroundCollector, token: str, engine: Engine
) -> None:
    mon = Monitor(collector.url, token, MODEL, "1", **FAST)
    good = [mon.log({"temperature": 70.0 + i, "machine_type": "press"}, "ok") for i in range(5)]
    # A wrong clock is not a hostile value: these are stored at the time they arrive.
    good.append(mon.log({"t": 1.0}, "ok", ts=1e300))
    good.append(mon.log({"t": 1.0}, "ok", ts=1.0))
    hostile_logs: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (({"\ud800": 1.0}, "ok"), {}),  # a feature named with a lone surrogate
        (({"t": 1.0}, "ok"), {"latency_ms": 10**400}),  # an int beyond float64
        (({"t": 1.0}, "ok"), {"request_id": "a\x00b"}),  # PostgreSQL text cannot hold NUL
        (({"t": 2**63}, "ok"), {}),  # an integer float64 cannot hold exactly
        (({"t": "a\x00b"}, "ok"), {}),
        (({"": 1.0}, "ok"), {}),
        (({"x" * 129: 1.0}, "ok"), {}),
        (({"t": 1.0}, "a\udc00"), {}),
        (({"t": 1.0}, 2**60), {}),
        (({"t": 1.0}, "ok"), {"probabilities": {"a\x00": 0.5}}),
        (({"t": 1.0}, "ok"), {"probabilities": [1.5]}),
        (({"t": 1.0}, "ok"), {"latency_ms": -1.0}),
        (({"t": 1.0}, "ok"), {"ts": math.inf}),
        (({"t": [[[1]]]}, "ok"), {}),
    ]
    for args, kwargs in hostile_logs:
        mon.log(*args, **kwargs)
    mon.log_label(good[0], "fail", ts=math.nan)
    mon.log_label(good[1], 2**60)
    mon.log_label(good[2], "a\x00b")
    mon.log_label(good[3], "fail")
    mon.log_label(good[4], "fail", ts=1e300)  # a wrong clock: stored at its arrival

    assert mon.flush(30) is False  # the refused values are lost, and flush() says so
    assert mon.flush(30) is True  # ... once: the rest was delivered

    records, labels = mon.stats(), mon.label_stats()
    mon.close(timeout=5)
    assert records["delivered"] == len(good)
    assert records["dropped"]["invalid"] == len(hostile_logs)
    assert (labels["delivered"], labels["dropped"]["invalid"]) == (2, 3)
    assert {reason for reason, n in records["dropped"].items() if n} == {"invalid"}
    assert stored(engine)["records"] == len(good)
    assert stored(engine)["labels"] == 2


# --- the collector answers every such body with a 4xx naming the field ------------------------


@dataclass(frozen=True)
class Hostile:
    """A body holding a value the storage cannot hold, and the answer it must get."""

    name: str
    path: str
    body: bytes
    status: int
    code: str
    field: str


def _records(*rows: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return batch(list(rows), **envelope)


def _text(obj: Any) -> bytes:
    """JSON as Python writes it: NaN, huge integers and lone surrogates (escaped) included."""
    return json.dumps(obj).encode()


def _deep(depth: int) -> Any:
    return json.loads("[" * depth + "]" * depth)


HOSTILE_BODIES = [
    Hostile(
        "feature named with a lone surrogate",
        wire.RECORDS_PATH,
        _text(_records(record(features={"\ud800": 1.0}))),
        400,
        "invalid_string",
        "body",
    ),
    Hostile(
        "latency beyond float64",
        wire.RECORDS_PATH,
        _text(_records(record(latency_ms=10**400))),
        400,
        "invalid_number",
        "body",
    ),
    Hostile(
        "NaN",
        wire.RECORDS_PATH,
        _text(_records(record(latency_ms=float("nan")))),
        400,
        "invalid_number",
        "body",
    ),
    Hostile(
        "request id with NUL",
        wire.RECORDS_PATH,
        _text(_records(record(), record(request_id="a\x00b"))),
        422,
        "invalid_string",
        "records[1].request_id",
    ),
    Hostile(
        "model version with NUL",
        wire.RECORDS_PATH,
        _text(_records(record(), model_version="1\x00")),
        422,
        "invalid_string",
        "model_version",
    ),
    Hostile(
        "body nested 5,000 deep",
        wire.RECORDS_PATH,
        b"[" * 5000 + b"]" * 5000,
        400,
        "too_deep",
        "body",
    ),
    Hostile(
        "label time beyond 2**53",
        wire.LABELS_PATH,
        _text({"model": MODEL, "labels": [{"request_id": "r1", "label": "x", "ts": 2**60}]}),
        422,
        "invalid_value",
        "labels[0].ts",
    ),
    Hostile(
        "label beyond 2**53",
        wire.LABELS_PATH,
        _text({"model": MODEL, "labels": [{"request_id": "r1", "label": 2**60}]}),
        422,
        "out_of_range",
        "labels[0].label",
    ),
    Hostile(
        "label nested",
        wire.LABELS_PATH,
        _text({"model": MODEL, "labels": [{"request_id": "r1", "label": _deep(900)}]}),
        422,
        "invalid_type",
        "labels[0].label",
    ),
    Hostile(
        "heartbeat time beyond 2**53",
        wire.HEARTBEATS_PATH,
        _text({"ts": 2**60, "sdk": {}}),
        422,
        "invalid_field",
        "ts",
    ),
    Hostile(
        "heartbeat sdk with a 15 MB blob",
        wire.HEARTBEATS_PATH,
        gzip.compress(_text({"sdk": {"logged": 1, "blob": "x" * 15_000_000}})),
        422,
        "invalid_value",
        "sdk.blob",
    ),
    Hostile(
        "heartbeat runtime nested too deep",
        wire.HEARTBEATS_PATH,
        _text({"sdk": {}, "runtime": {"a": {"b": {"c": {"d": 1}}}}}),
        422,
        "too_deep",
        "runtime.a.b.c",
    ),
    Hostile(
        "heartbeat runtime of 20 KB",
        wire.HEARTBEATS_PATH,
        _text({"sdk": {}, "runtime": {f"k{i}": "x" * 1000 for i in range(20)}}),
        413,
        "too_large",
        "runtime",
    ),
    Hostile(
        "heartbeat runtime of 5,000 entries",
        wire.HEARTBEATS_PATH,
        _text({"sdk": {}, "runtime": {"a": list(range(5000))}}),
        413,
        "too_large",
        "runtime.a",
    ),
]


@pytest.mark.parametrize("case", HOSTILE_BODIES, ids=[c.name for c in HOSTILE_BODIES])
def test_a_body_the_storage_cannot_hold_is_a_4xx_with_its_field_and_the_node_goes_on(
    case: Hostile, http: httpx.Client, token: str, engine: Engine
) -> None:
    headers = {**auth(token), "Content-Type": "application/json"}
    if case.body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"

    answer = http.post(case.path, content=case.body, headers=headers)

    assert answer.status_code == case.status, answer.text[:500]
    error = answer.json()["error"]
    assert error["message"]
    assert error["code"] == case.code or error["details"][0]["code"] == case.code, error
    assert error["details"][0]["field"] == case.field
    assert stored(engine)["records"] == 0
    good = http.post(wire.RECORDS_PATH, json=batch([record()]), headers=auth(token))
    assert good.json() == {"accepted": 1, "duplicate": 0, "rejected": []}


def test_values_a_parser_lets_through_are_rejected_one_record_at_a_time(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    rows = [
        record(),
        record(features={"rpm": 2**63}),  # parsed as an integer float64 cannot hold exactly
        record(prediction=2**60),
        record(latency_ms=2**60),
        record(features={"rpm": _deep(900)}),
        record(probabilities={f"c{i}": 0.0 for i in range(wire.MAX_CLASSES + 1)}),
        record(probabilities={"": 0.5}),
        record(ts=2**60),
        record(ts=1e300),  # a wrong clock: stored at the time it arrived
        record(extra=2**64 - 1),  # not a wire field: left out, whatever it holds
    ]

    answer = http.post(wire.RECORDS_PATH, content=_text(_records(*rows)), headers=auth(token))

    assert answer.status_code == 200, answer.text[:500]
    result = answer.json()
    assert (result["accepted"], result["duplicate"]) == (3, 0)
    assert [(r["index"], r["code"], r["field"]) for r in result["rejected"]] == [
        (1, "out_of_range", "records[1].features.rpm"),
        (2, "out_of_range", "records[2].prediction"),
        (3, "out_of_range", "records[3].latency_ms"),
        (4, "invalid_type", "records[4].features.rpm"),
        (5, "too_large", "records[5].probabilities"),
        (6, "invalid_value", "records[6].probabilities"),
        (7, "out_of_range", "records[7].ts"),
    ]
    assert stored(engine)["records"] == 3


def test_a_heartbeat_from_a_wrong_clock_is_stored_at_the_time_it_arrived(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    before = datetime.now(UTC)
    for ts in (1.0, before.timestamp() + 3 * 86_400, 2**53):
        answer = http.post(wire.HEARTBEATS_PATH, json={"ts": ts, "sdk": {}}, headers=auth(token))
        assert answer.status_code == 204, answer.text
        with engine.connect() as conn:
            beat = latest_heartbeat(conn, get_node(conn, "node-1").id)
        assert beat is not None and before <= beat.ts <= datetime.now(UTC)


# --- the heartbeats our own SDK and runtime send pass the rules ---------------------------------


def busy_runtime() -> EdgeRuntime:
    """The demo model's runtime after calls that fill every part of its telemetry: latencies,
    an error of each kind, a warning of each kind for every feature, a failed swap."""
    runtime = EdgeRuntime(paths().model)
    rows = MachineFleetGenerator(5).readings(50).rows()
    for row in rows:
        runtime.predict(row)
    card = runtime.card
    for feature in card.features:
        for odd in (None, 1e12, "no-such-category"):
            with contextlib.suppress(InvalidInput):  # warnings for some, errors for others
                runtime.predict({**rows[0], feature.name: odd})
    for bad in ([rows[0]], {**rows[0], "colour": "red"}, {"rpm": 1}):
        with contextlib.suppress(InvalidInput):
            runtime.predict(bad)  # type: ignore[arg-type]
    runtime.status.failed("invalid_model", "onnxruntime cannot load the model: " + "x" * 300, "9")
    return runtime


def test_the_heartbeats_our_sdk_and_runtime_send_are_stored(
    collector: BackgroundCollector, token: str, engine: Engine
) -> None:
    runtime = busy_runtime()
    telemetry = runtime.telemetry()
    assert telemetry["errors"] and telemetry["warnings"] and telemetry["swap"]["last_error"]
    assert wire.runtime_problem(telemetry) is None
    mon = Monitor(collector.url, token, MODEL, "1", telemetry=runtime.telemetry, **FAST)
    for _ in range(3):
        mon.log({"temperature": 70.0}, "ok")
    mon.log({"\ud800": 1.0}, "ok")  # counted as invalid: every drop reason may be non-zero

    with engine.connect() as conn:
        node_id = get_node(conn, "node-1").id
    mon.heartbeat()
    deadline = time.monotonic() + 30
    beat = None
    while beat is None or beat.runtime is None:
        assert time.monotonic() < deadline, "no heartbeat with runtime telemetry was stored"
        time.sleep(0.05)
        with engine.connect() as conn:
            beat = latest_heartbeat(conn, node_id)
    mon.close(timeout=5)
    runtime.close()

    assert beat.runtime["warnings"] == telemetry["warnings"]
    assert beat.runtime["swap"]["last_error"] == telemetry["swap"]["last_error"]
    assert set(beat.sdk) >= {"logged", "delivered", "dropped", "queue_depth", "spool_records"}
    assert beat.sdk["dropped"]["invalid"] == 1
