"""POST /v1/records: exactly-once storage, partial success, and a clear error for bad input."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.storage import nodes
from monitor.storage.engine import begin_write
from monitor.storage.models import get_model
from monitor.storage.windows import load_window
from tests.collector.conftest import auth, batch, record, stored


def post(http: httpx.Client, token: str, body: Any, *, gzipped: bool = False) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {**auth(token), "Content-Type": "application/json"}
    if gzipped:
        raw = gzip.compress(raw)
        headers["Content-Encoding"] = "gzip"
    return http.post(wire.RECORDS_PATH, content=raw, headers=headers)


def test_a_batch_is_stored_and_counted(http: httpx.Client, token: str, engine: Engine) -> None:
    body = batch([record() for _ in range(20)])

    answer = post(http, token, body, gzipped=True)

    assert answer.status_code == 200
    assert answer.json() == {"accepted": 20, "duplicate": 0, "rejected": []}
    assert stored(engine)["records"] == 20


def test_a_retried_batch_is_stored_once(http: httpx.Client, token: str, engine: Engine) -> None:
    body = batch([record() for _ in range(10)])
    post(http, token, body)

    again = post(http, token, body, gzipped=True)

    assert again.json() == {"accepted": 0, "duplicate": 10, "rejected": []}
    assert stored(engine) == {"records": 10, "batches": 1, "labels": 0}


def test_a_record_repeated_inside_one_batch_counts_once(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    one = record()
    answer = post(http, token, batch([one, dict(one), record()]))

    assert answer.json() == {"accepted": 2, "duplicate": 1, "rejected": []}
    assert stored(engine)["records"] == 2


def test_overlapping_batches_store_only_the_new_records(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    first = [record() for _ in range(5)]
    post(http, token, batch(first))

    answer = post(http, token, batch([*first[2:], record(), record()]))

    assert answer.json() == {"accepted": 2, "duplicate": 3, "rejected": []}
    with engine.connect() as conn:
        frame = load_window(
            conn,
            get_model(conn, "pump-failure").id,
            datetime.now(UTC) - timedelta(hours=1),
            datetime.now(UTC) + timedelta(hours=1),
        )
    assert len(frame) == 7
    assert frame["row_key"].is_unique


def test_the_same_record_id_from_two_nodes_is_two_records(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    with begin_write(engine) as conn:
        _, other = nodes.add_node(conn, "node-2")
    one = record()

    post(http, token, batch([one]))
    answer = post(http, other, batch([one]))

    assert answer.json()["accepted"] == 1
    assert stored(engine)["records"] == 2


def test_bad_records_are_rejected_one_by_one_while_good_ones_are_stored(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    body = batch(
        [
            record(),
            record(ts="yesterday"),
            record(features={"rpm": [1, 2]}),
            record(),
            {"id": "x1", "ts": 1.7e9, "features": {}},
        ]
    )

    answer = post(http, token, body)

    assert answer.status_code == 200
    result = answer.json()
    assert (result["accepted"], result["duplicate"]) == (2, 0)
    assert [(r["index"], r["code"], r["field"]) for r in result["rejected"]] == [
        (1, "invalid_type", "records[1].ts"),
        (2, "invalid_type", "records[2].features.rpm"),
        (4, "missing_field", "records[4].prediction"),
    ]
    assert stored(engine)["records"] == 2


def test_stored_values_come_back_in_the_window(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    rows = [
        record(features={"temperature": 70.0 + i, "machine_type": "press"}, prediction=i % 2)
        for i in range(4)
    ]
    rows.append(
        record(
            features={"temperature": None, "humidity": 0.4}, prediction=0, probabilities=[0.2, 0.8]
        )
    )
    post(http, token, batch(rows))

    with engine.connect() as conn:
        frame = load_window(
            conn,
            get_model(conn, "pump-failure").id,
            datetime.now(UTC) - timedelta(hours=1),
            datetime.now(UTC) + timedelta(hours=1),
        )

    frame = frame.sort_values("row_key").reset_index(drop=True)
    assert frame["feature:temperature"].tolist()[:4] == [70.0, 71.0, 72.0, 73.0]
    assert frame["feature:temperature"].isna().tolist()[4]
    assert frame["feature:humidity"].tolist()[4] == 0.4
    assert frame["prediction"].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert frame["proba:ok"].tolist()[0] == 0.9
    assert frame["proba:1"].tolist()[4] == 0.8
    assert frame["latency_ms"].tolist() == [1.25] * 5
    assert str(frame["ts"].dt.tz) == "UTC"


def test_a_record_from_a_wrong_clock_is_stored_at_the_time_it_arrived(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    before = datetime.now(UTC)
    rows = [
        record(ts=0.5, features={"temperature": 1.0}),  # a device that booted in 1970
        record(ts=before.timestamp() - 60, features={"temperature": 2.0}),
        record(ts=before.timestamp() + 3 * 86_400, features={"temperature": 3.0}),  # ahead
        record(ts=2**53, features={"temperature": 4.0}),  # the last int a float64 holds
    ]

    answer = post(http, token, batch(rows))
    after = datetime.now(UTC)

    assert answer.json() == {"accepted": 4, "duplicate": 0, "rejected": []}
    with engine.connect() as conn:
        frame = load_window(
            conn, get_model(conn, "pump-failure").id, before, after + timedelta(microseconds=1)
        )
        node = nodes.get_node(conn, "node-1")
    frame = frame.sort_values("feature:temperature").reset_index(drop=True)
    # The plausible record keeps its time (a minute before); the others are analysed at their
    # arrival, in the window of the time they were received, and keep their own beside it.
    assert frame["feature:temperature"].tolist() == [1.0, 3.0, 4.0]
    assert all(before <= ts <= after for ts in frame["ts"])
    assert frame["device_ts"].tolist() == [0.5, before.timestamp() + 3 * 86_400, 2.0**53]
    assert node.clock_skew_at is not None and before <= node.clock_skew_at <= after
    # The last implausible record's skew: its device time minus the time it was received.
    assert node.clock_skew_seconds is not None
    received = 2.0**53 - node.clock_skew_seconds
    assert before.timestamp() - 1 <= received <= after.timestamp() + 1
    with engine.connect() as conn:
        earlier = load_window(
            conn,
            get_model(conn, "pump-failure").id,
            before - timedelta(minutes=2),
            before,
        )
    assert earlier["feature:temperature"].tolist() == [2.0]
    assert earlier["device_ts"].isna().all()


def test_a_window_of_batches_with_and_without_device_times_loads_whole(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    for i, ts in enumerate([None, 1.0, None, 5.0]):
        rows = [record(features={"temperature": float(10 * i + j)}) for j in range(3)]
        if ts is not None:
            rows[1]["ts"] = ts
        post(http, token, batch(rows))

    with engine.connect() as conn:
        frame = load_window(
            conn,
            get_model(conn, "pump-failure").id,
            datetime.now(UTC) - timedelta(hours=1),
            datetime.now(UTC) + timedelta(hours=1),
        )

    frame = frame.sort_values("feature:temperature").reset_index(drop=True)
    assert frame["feature:temperature"].tolist() == [
        float(10 * i + j) for i in range(4) for j in range(3)
    ]
    device = dict(zip(frame["feature:temperature"], frame["device_ts"], strict=True))
    assert {t: d for t, d in device.items() if d == d} == {11.0: 1.0, 31.0: 5.0}  # NaN elsewhere
    assert frame["feature:temperature"].dtype == "float64"


def test_a_batch_of_plausible_times_marks_no_skew_and_holds_no_device_ts(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    post(http, token, batch([record(), record()]))
    with engine.connect() as conn:
        node = nodes.get_node(conn, "node-1")
        frame = load_window(
            conn,
            get_model(conn, "pump-failure").id,
            datetime.now(UTC) - timedelta(hours=1),
            datetime.now(UTC) + timedelta(hours=1),
        )
    assert (node.clock_skew_seconds, node.clock_skew_at) == (None, None)
    assert len(frame) == 2 and "device_ts" not in frame.columns


@pytest.mark.parametrize(
    ("ts", "code"),
    [
        ("1970", "invalid_type"),
        (True, "invalid_type"),
        (None, "invalid_type"),
        (2**60, "out_of_range"),
    ],
)
def test_a_time_that_is_no_number_is_still_rejected_with_its_field(
    ts: Any, code: str, http: httpx.Client, token: str, engine: Engine
) -> None:
    answer = post(http, token, batch([record(), record(ts=ts)]))

    assert answer.status_code == 200
    assert [(r["code"], r["field"]) for r in answer.json()["rejected"]] == [(code, "records[1].ts")]
    assert stored(engine)["records"] == 1


@dataclass(frozen=True)
class BadInput:
    name: str
    send: Callable[[httpx.Client, str], httpx.Response]
    status: int
    code: str
    field: str | None = None


def _raw(body: bytes, headers: dict[str, str] | None = None) -> Callable[..., httpx.Response]:
    def send(http: httpx.Client, token: str) -> httpx.Response:
        return http.post(
            wire.RECORDS_PATH, content=body, headers={**auth(token), **(headers or {})}
        )

    return send


def _json(body: Any) -> Callable[..., httpx.Response]:
    return lambda http, token: post(http, token, body)


def _with_token(value: str | None) -> Callable[..., httpx.Response]:
    def send(http: httpx.Client, _token: str) -> httpx.Response:
        headers = {} if value is None else {"Authorization": value}
        return http.post(wire.RECORDS_PATH, json=batch([record()]), headers=headers)

    return send


def _revoked(http: httpx.Client, token: str) -> httpx.Response:
    http.post(
        "/v1/admin/nodes/node-1/revoke", headers={"Authorization": "Bearer ema_test-admin-token"}
    ).raise_for_status()
    return post(http, token, batch([record()]))


def gzip_bomb(decoded_bytes: int) -> bytes:
    """A small gzip body that expands to ``decoded_bytes``, made in bounded memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(decoded_bytes >> 20)]
    return b"".join([*parts, compressor.flush()])


_BOMB = gzip_bomb(wire.MAX_DECODED_BYTES * 4)

BAD_INPUTS = [
    BadInput(
        "malformed json", _raw(b'{"model": "pump-failure", "records": [}'), 400, "malformed_json"
    ),
    BadInput("not an object", _json([record()]), 422, "validation_failed", "body"),
    BadInput("records not a list", _json(batch({"a": 1})), 422, "validation_failed", "records"),
    BadInput(
        "wrong type in every record",
        _json(batch([record(features="hot")])),
        422,
        "all_records_rejected",
        "records[0].features",
    ),
    BadInput(
        "model version is a number",
        _json(batch([record()], model_version=3)),
        422,
        "validation_failed",
        "model_version",
    ),
    BadInput(
        "missing model",
        _json({"model_version": "1", "records": [record()]}),
        422,
        "validation_failed",
        "model",
    ),
    BadInput(
        "missing prediction in every record",
        _json(batch([{k: v for k, v in record().items() if k != "prediction"}])),
        422,
        "all_records_rejected",
        "records[0].prediction",
    ),
    BadInput(
        "unknown model", _json(batch([record()], model="nope")), 422, "unknown_model", "model"
    ),
    BadInput(
        "oversized body",
        _raw(b" " * (wire.MAX_WIRE_BYTES + 1)),
        413,
        "payload_too_large",
        "body",
    ),
    BadInput(
        "gzip bomb", _raw(_BOMB, {"Content-Encoding": "gzip"}), 413, "payload_too_large", "body"
    ),
    BadInput(
        "broken gzip", _raw(b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}), 400, "bad_gzip"
    ),
    BadInput(
        "unsupported encoding",
        _raw(b"{}", {"Content-Encoding": "br"}),
        400,
        "unsupported_encoding",
        "Content-Encoding",
    ),
    BadInput("no token", _with_token(None), 401, "unauthorized"),
    BadInput("not a bearer token", _with_token("Basic dXNlcjpwYXNz"), 401, "unauthorized"),
    BadInput("bad token", _with_token("Bearer emn_not-a-real-token"), 401, "invalid_token"),
    BadInput("revoked token", _revoked, 401, "invalid_token"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_stores_nothing(
    case: BadInput, http: httpx.Client, token: str, engine: Engine
) -> None:
    answer = case.send(http, token)

    assert answer.status_code == case.status, answer.text
    error = answer.json()["error"]
    assert error["code"] == case.code
    assert error["message"]
    if case.field is not None:
        assert error["details"][0]["field"] == case.field
    assert stored(engine) == {"records": 0, "batches": 0, "labels": 0}


def test_a_gzip_bomb_is_refused_quickly_in_bounded_memory(http: httpx.Client, token: str) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bomb = gzip_bomb(1024 << 20)
    assert len(bomb) < wire.MAX_WIRE_BYTES

    answer = _raw(bomb, {"Content-Encoding": "gzip"})(http, token)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before

    assert answer.status_code == 413
    # 1 GiB would expand inside this process (the collector runs on a thread here); decoding
    # stops at the 20 MiB limit, so the peak grows by far less than the bomb's size.
    assert grown_kib < 200 * 1024


def test_concurrent_first_batches_of_a_new_version_all_land(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    # Several nodes switching to a new version at once must not share a version id that
    # another request's transaction has not committed yet.
    import threading

    answers: list[int] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        body = batch([record() for _ in range(50)], model_version="9.1")
        answers.append(post(http, token, body).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 8
    assert stored(engine)["records"] == 400
