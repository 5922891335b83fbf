"""The wire's rule set: what a record, a label and a heartbeat may hold, the same for the SDK
(before it queues a value) and the collector (when it validates one).

The last tests are the agreement itself: whatever hostile value the SDK accepts, encoded as its
worker encodes it, passes the collector's parser and validation and becomes a stored payload.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import wire
from monitor.collector import validation
from monitor.collector.body import gunzip, parse_json
from monitor.errors import BadRequest, MonitorError, ValidationFailed
from monitor.sdk.records import (
    InvalidValue,
    build_label,
    build_record,
    check_id,
    finite_number,
    heartbeat_runtime,
    new_id,
)
from monitor.sdk.worker import encode_line, splice_body
from monitor.storage import payload
from monitor.storage.records import prepare_batch
from tests.collector.test_fuzz import SPECIAL_NUMBERS, SPECIAL_TEXT

NOW = time.time()
HYPOTHESIS = settings(
    max_examples=1_000,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("plain", True),
        ("", True),
        ("é and \U0001f600 and \u202e", True),
        ("\\u0000", True),  # a backslash and "u0000"
        ("a\x00b", False),  # PostgreSQL text cannot hold NUL
        ("\ud800", False),  # UTF-8 cannot encode a lone surrogate
        ("é\udfff", False),
        ("\ud83d\ude00", False),  # a pair of surrogate code points is no character either
    ],
)
def test_text_holds_no_nul_and_no_surrogate(text: str, ok: bool) -> None:
    assert wire.text_ok(text) is ok


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        (0, True),
        (-(2**53), True),
        (2**53, True),
        (2**53 + 1, False),  # float64 holds integers exactly only up to 2**53
        (-(2**53) - 1, False),
        (10**400, False),
        (1.5, True),
        (1e308, True),
        (5e-324, True),
        (math.nan, False),
        (math.inf, False),
        (-math.inf, False),
        (True, False),  # a bool is no number
        ("1", False),
        (None, False),
    ],
)
def test_numbers_are_finite_and_integers_within_2_53(number: Any, ok: bool) -> None:
    assert wire.number_ok(number) is ok


def test_times_run_from_2000_to_a_day_ahead() -> None:
    now = time.time()
    assert wire.ts_ok(wire.MIN_TS, now) and wire.ts_ok(now, now)
    assert wire.ts_ok(now + wire.MAX_FUTURE_SKEW, now)
    assert not wire.ts_ok(wire.MIN_TS - 0.001, now)
    assert not wire.ts_ok(now + wire.MAX_FUTURE_SKEW + 1, now)
    assert not wire.ts_ok(1e300, now)
    assert not wire.ts_ok(math.nan, now) and not wire.ts_ok(True, now)
    assert not wire.ts_ok(str(now), now)


def test_names_are_1_to_128_characters_of_text() -> None:
    assert wire.name_ok("x" * wire.MAX_ID_CHARS) and wire.name_ok("pump-7")
    for bad in ("", "x" * (wire.MAX_ID_CHARS + 1), "a\x00b", "\ud800", 7, None):
        assert not wire.name_ok(bad)


def test_a_model_or_node_name_is_url_safe_to_its_last_character() -> None:
    assert re.match(wire.NAME_PATTERN, "pump-failure_2:eu@plant.1")
    for bad in ("pump\n", "pump\x00", "-pump", "pump/1", "x" * 129, ""):
        assert re.match(wire.NAME_PATTERN, bad) is None


def test_predictions_and_labels_are_text_booleans_or_numbers() -> None:
    for good in ("fail", True, 0, 0.25, -(2**53)):
        assert wire.scalar_ok(good)
    for bad in (None, [1], {"a": 1}, math.nan, 2**60, "a\x00b", "\udc00"):
        assert not wire.scalar_ok(bad)


def sdk_counters() -> dict[str, Any]:
    """The ``sdk`` object of a heartbeat exactly as ``Monitor.stats()`` shapes it."""
    return {
        "logged": 1200,
        "enqueued": 130,
        "delivered": 128,
        "dropped": dict.fromkeys(wire.DROP_REASONS, 3),
        "queue_depth": 2,
        "spool_records": 0,
        "spool_bytes": 0,
        "internal_errors": 0,
    }


def test_the_sdk_object_holds_the_known_counters() -> None:
    assert wire.sdk_problem(sdk_counters()) is None
    assert wire.sdk_problem({}) is None
    assert wire.sdk_problem({**sdk_counters(), "version": "0.4.0", "later": None}) is None


@pytest.mark.parametrize(
    ("sdk", "code", "field"),
    [
        ([1, 2], "invalid_type", ""),
        ({"blob": "x" * 15_000_000}, "invalid_value", "blob"),
        ({f"c{i}": 1 for i in range(wire.MAX_SDK_KEYS + 1)}, "too_large", ""),
        ({"logged": -1}, "invalid_value", "logged"),
        ({"logged": 2**60}, "invalid_value", "logged"),
        ({"logged": {"nested": 1}}, "invalid_value", "logged"),
        ({"x" * 65: 1}, "invalid_value", ""),
        ({"dropped": [1]}, "invalid_type", "dropped"),
        ({"dropped": {"queue_full": "many"}}, "invalid_value", "dropped.queue_full"),
        ({"dropped": {"queue_full": None}}, "invalid_value", "dropped.queue_full"),
        ({"dropped": {f"r{i}": 1 for i in range(wire.MAX_SDK_KEYS + 1)}}, "too_large", "dropped"),
    ],
)
def test_a_heartbeat_sdk_object_out_of_bounds_is_refused_with_its_field(
    sdk: Any, code: str, field: str
) -> None:
    problem = wire.sdk_problem(sdk)
    assert problem is not None
    assert (problem.code, problem.field) == (code, field)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def test_runtime_telemetry_is_free_form_within_bounds() -> None:
    runtime = {
        "model_version": "3",
        "latency_ms": {"p50": 1.2, "p95": 3.4},
        "warnings": {"missing_value": {f"f{i}": i for i in range(200)}},
        "swap": {"last_error": {"message": "x" * wire.MAX_RUNTIME_STRING_CHARS, "at": None}},
        "flags": [True, False, None, "é"],
    }
    assert wire.runtime_problem(runtime) is None
    assert wire.runtime_problem(deep(wire.MAX_RUNTIME_DEPTH)) is None


@pytest.mark.parametrize(
    ("runtime", "code", "field"),
    [
        ("text", "invalid_type", ""),
        (deep(wire.MAX_RUNTIME_DEPTH + 1), "too_deep", "k.k.k"),
        ({"a": [[[1]]]}, "too_deep", "a[0][0]"),
        ({"a": {f"k{i}": 0 for i in range(wire.MAX_RUNTIME_ENTRIES)}}, "too_large", "a"),
        ({"a": "x" * (wire.MAX_RUNTIME_STRING_CHARS + 1)}, "invalid_value", "a"),
        ({"x" * (wire.MAX_RUNTIME_STRING_CHARS + 1): 1}, "invalid_value", ""),
        ({"a": ["ok", "a\x00b"]}, "invalid_value", "a[1]"),
        ({"a": 2**60}, "invalid_value", "a"),
        ({"a": math.nan}, "invalid_value", "a"),
        ({"a": object()}, "invalid_value", "a"),
        ({"model_version": "v" * 129}, "invalid_value", "model_version"),
        ({f"s{i}": "x" * 1000 for i in range(17)}, "too_large", ""),  # 17 KB of JSON
    ],
)
def test_runtime_telemetry_out_of_bounds_is_refused_with_its_field(
    runtime: Any, code: str, field: str
) -> None:
    problem = wire.runtime_problem(runtime)
    assert problem is not None
    assert (problem.code, problem.field) == (code, field)


def test_the_sdk_fits_runtime_telemetry_to_the_bounds_or_leaves_it_out() -> None:
    long = "onnxruntime cannot load the model: " + "detail " * 400
    fitted = heartbeat_runtime({"swap": {"last_error": {"message": long}}, "p95": math.inf})
    message = fitted["swap"]["last_error"]["message"]
    assert len(message) == wire.MAX_RUNTIME_STRING_CHARS and long.startswith(message[:-3])
    assert fitted["p95"] is None  # JSON has no infinity
    assert wire.runtime_problem(fitted) is None
    for unfit in (deep(wire.MAX_RUNTIME_DEPTH + 1), {"a": object()}, {1: "int key"}, "text"):
        with pytest.raises(InvalidValue):
            heartbeat_runtime(unfit)


# --- the parser: what only a parser sees refuses the whole body ---------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"records": [NaN]}', 400, "invalid_number"),
        (b'{"latency_ms": -Infinity}', 400, "invalid_number"),
        (b'{"latency_ms": ' + b"1" * 401 + b"}", 400, "invalid_number"),  # 10**400
        (b'{"x": 1e999}', 400, "invalid_number"),
        (b"[" * 5000 + b"]" * 5000, 400, "too_deep"),
        (b'{"features": {"\\ud800": 1}}', 400, "invalid_string"),
        (b'{"id": "\xed\xa0\x80"}', 400, "invalid_string"),  # a surrogate, UTF-8 encoded
        (b'{"id": "\xff"}', 400, "invalid_string"),
        (b'{"records": [}', 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b'{"records": [{"request_id": "a\\u0000b"}]}', 422, "invalid_string"),
    ],
)
def test_what_only_the_parser_sees_is_a_4xx_for_the_whole_body(
    raw: bytes, status: int, code: str
) -> None:
    with pytest.raises(MonitorError) as caught:
        parse_json(raw)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.details[0]["field"]


def test_a_nul_is_refused_with_the_path_of_its_string_or_key() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json(b'{"records": [{"id": "ok"}, {"features": {"a\\u0000b": 1}}]}')
    assert caught.value.details[0]["field"] == "records[1].features.a\\u0000b"
    with pytest.raises(ValidationFailed) as caught:
        parse_json(b'{"records": [{"id": "ok"}, {"request_id": "r\\u0000"}]}')
    assert caught.value.details[0]["field"] == "records[1].request_id"


def test_a_backslash_before_u0000_is_text_not_nul() -> None:
    assert parse_json(b'{"id": "\\\\u0000"}') == {"id": "\\u0000"}
    assert parse_json(b'{"id": "\\\\\\\\u0000"}') == {"id": "\\\\u0000"}


def test_a_nul_in_a_body_too_large_to_walk_is_refused_by_its_bytes() -> None:
    many = b",".join([b"1"] * 150_000)
    with pytest.raises(ValidationFailed) as caught:
        parse_json(b'{"values": [' + many + b', "\\u0000"]}')
    assert caught.value.details[0]["field"] == "body"
    text = parse_json(b'{"values": [' + many + b', "\\\\u0000"]}')
    assert text["values"][-1] == "\\u0000"


def test_nesting_up_to_the_limit_parses_and_beyond_it_is_too_deep() -> None:
    depth = wire.MAX_JSON_DEPTH
    assert parse_json(b"[" * depth + b"]" * depth) is not None
    with pytest.raises(BadRequest) as caught:
        parse_json(b"[" * (depth + 1) + b"]" * (depth + 1))
    assert caught.value.code == "too_deep"


def test_gzip_garbage_is_a_bad_gzip_with_its_field() -> None:
    for garbage in (b"\x1f\x8b garbage", b"\x1f\x8b", b"not gzip at all"):
        with pytest.raises(BadRequest) as caught:
            gunzip(garbage, 1 << 20)
        assert caught.value.code == "bad_gzip"
        assert caught.value.details[0]["field"] == "body"


# --- the agreement: whatever the SDK accepts, the collector accepts -----------------------------

text = st.one_of(
    st.sampled_from(SPECIAL_TEXT), st.text(st.characters(exclude_categories=()), max_size=12)
)
number = st.one_of(st.sampled_from(SPECIAL_NUMBERS), st.integers(), st.floats())
scalar = st.one_of(st.none(), st.booleans(), number, text)


def containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    lists = st.lists(kids, max_size=3) | st.tuples(kids, kids)
    return lists | st.dictionaries(text, kids, max_size=3)


#: What a caller may pass where one value belongs: any JSON value, and then some.
value = st.recursive(scalar, containers, max_leaves=6)
#: Plain values: each generated call makes one or two of its arguments hostile, so that many
#: calls pass as a whole and their hostile parts meet the rules.
plain_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=8)
plain_number = st.one_of(st.floats(-1e6, 1e6), st.integers(-(10**6), 10**6))
plain_scalar = st.one_of(st.booleans(), plain_text, plain_number)
hostile_name = st.one_of(text, st.integers(), st.booleans())
PLAIN: dict[str, st.SearchStrategy[Any]] = {
    "features": st.dictionaries(plain_text, st.one_of(st.none(), plain_scalar), max_size=5),
    "prediction": plain_scalar,
    "label": plain_scalar,
    "probabilities": st.one_of(
        st.none(),
        st.dictionaries(plain_text, st.floats(0, 1), max_size=4),
        st.lists(st.floats(0, 1), max_size=4),
    ),
    "latency": st.one_of(st.none(), st.floats(0, 1e4)),
    "request_id": st.one_of(st.none(), plain_text),
    "ts": st.one_of(st.none(), st.floats(NOW - 86_400 * 365, NOW + 3_600)),
}
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "features": st.one_of(
        value,
        st.builds(
            lambda plain, hostile: {**plain, **hostile},
            PLAIN["features"],
            st.dictionaries(st.one_of(plain_text, hostile_name), value, min_size=1, max_size=2),
        ),
    ),
    "prediction": value,
    "label": value,
    "probabilities": st.one_of(
        value,
        st.dictionaries(st.one_of(plain_text, hostile_name), st.one_of(st.floats(0, 1), value)),
        st.lists(st.one_of(st.floats(0, 1), value), max_size=4),
    ),
    "latency": value,
    "request_id": text,
    "ts": number,
}


@st.composite
def call(draw: st.DrawFn, fields: tuple[str, ...]) -> dict[str, Any]:
    """The arguments of one log() or log_label() call, zero to two of them hostile."""
    args = {name: draw(PLAIN[name]) for name in fields}
    for name in draw(st.lists(st.sampled_from(fields), max_size=2, unique=True)):
        args[name] = draw(HOSTILE[name])
    return args


def encoded(kind: str, item: dict[str, Any]) -> Any:
    """``item`` as the SDK's worker sends it (its spool line spliced into a body), then parsed
    by the collector."""
    skeleton = (
        wire.records_body("b-1", "pump-failure", "1", [])
        if kind == "records"
        else wire.labels_body("pump-failure", [])
    )
    line = encode_line(item)
    return parse_json(splice_body(skeleton, kind, [line[:-1]]))


def test_every_record_the_sdk_accepts_the_collector_accepts_and_stores() -> None:
    accepted = 0
    fields = ("features", "prediction", "probabilities", "latency", "request_id", "ts")

    @HYPOTHESIS
    @given(args=call(fields))
    def check(args: dict[str, Any]) -> None:
        nonlocal accepted
        record_id = new_id()
        request_id, ts = args["request_id"], args["ts"]
        try:
            # As Monitor.log() builds a record.
            rid = record_id if request_id is None else check_id(request_id, "request_id")
            when = NOW if ts is None else round(finite_number(ts, "ts"), 3)
            record = build_record(
                record_id,
                rid,
                when,
                args["features"],
                args["prediction"],
                args["probabilities"],
                args["latency"],
            )
        except InvalidValue:
            return

        batch = validation.records_batch(encoded("records", record))

        assert [r.as_dict() for r in batch.rejected] == []
        assert len(batch.records) == 1
        payload.serialise(prepare_batch(batch.records).table)  # and storage holds it
        accepted += 1

    check()
    assert accepted > 200  # the generated values reached the collector, not only the SDK


def test_every_label_the_sdk_accepts_the_collector_accepts() -> None:
    accepted = 0

    @HYPOTHESIS
    @given(args=call(("request_id", "label", "ts")))
    def check(args: dict[str, Any]) -> None:
        nonlocal accepted
        request_id, ts = args["request_id"] or new_id(), args["ts"]
        try:
            # As Monitor.log_label() builds a label.
            rid = check_id(request_id, "request_id")
            when = NOW if ts is None else finite_number(ts, "ts")
            item = build_label(rid, args["label"], round(when, 3))
        except InvalidValue:
            return

        model, items = validation.labels_body(encoded("labels", item))

        assert (model, len(items)) == ("pump-failure", 1)
        json.dumps(items[0]["label"])  # the labels table stores it as JSON
        accepted += 1

    check()
    assert accepted > 200


def test_every_runtime_telemetry_the_sdk_sends_the_collector_accepts() -> None:
    accepted = 0

    @HYPOTHESIS
    @given(runtime=st.dictionaries(st.one_of(plain_text, text), value, max_size=6))
    def check(runtime: Any) -> None:
        nonlocal accepted
        try:
            fitted = heartbeat_runtime(runtime)
        except InvalidValue:
            return
        body = {"ts": time.time(), "model": "pump-failure", "sdk": sdk_counters()}
        body["runtime"] = fitted

        beat = validation.heartbeat_body(parse_json(encode_line(body)))

        assert beat.runtime == fitted
        accepted += 1

    check()
    assert accepted > 100
