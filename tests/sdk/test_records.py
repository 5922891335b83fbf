"""Record and label building: what log() accepts, converts and refuses."""

from __future__ import annotations

import math
import os
import time
import uuid
from typing import Any

import pytest

from monitor.sdk.records import (
    InvalidValue,
    build_label,
    build_record,
    features_value,
    new_id,
    now_ms,
    prediction_value,
    probabilities_value,
)
from monitor.wire import MAX_FEATURES

#: A plausible record time (2024-11-25): the rules take times from 2000 to a day ahead.
TS = 1_732_530_000.5


class FakeScalar:
    """Stands in for a numpy scalar: not a Python number, but has ``item()``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def item(self) -> Any:
        return self.value


class FakeArray:
    def __init__(self, values: list[float]) -> None:
        self.values = values

    def tolist(self) -> list[float]:
        return list(self.values)


def test_ids_are_uuid7_hex_with_the_millisecond_first() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert parsed.hex == value  # 32 lowercase hex digits
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= int(value[:12], 16) <= after
    assert new_id(0x0123_4567_89AB).startswith("0123456789ab7")


def test_ids_are_time_ordered_and_unique_at_high_rates() -> None:
    ids = [new_id() for _ in range(50_000)]  # many per millisecond
    assert len(set(ids)) == len(ids)
    prefixes = [i[:12] for i in ids]
    assert prefixes == sorted(prefixes)
    assert len(set(prefixes)) < len(ids)  # several ids did share a millisecond
    same_ms = [new_id(now_ms()) for _ in range(1000)]
    assert len(set(same_ms)) == 1000


def test_a_forked_child_makes_other_ids() -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    ms = now_ms()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, ",".join(new_id(ms) for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_id(ms) for _ in range(5)]
    assert len(child) == 5
    assert not set(child) & set(parent)


def test_plain_features_are_copied() -> None:
    features = {"t": 71.5, "kind": "press", "on": True, "n": 3, "missing": None}
    out = features_value(features)
    assert out == features
    features["t"] = 0.0
    assert out["t"] == 71.5


def test_non_finite_feature_values_become_null() -> None:
    out = features_value({"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.0})
    assert out == {"a": None, "b": None, "c": None, "d": 1.0}


def test_numpy_like_scalars_are_converted() -> None:
    out = features_value({"a": FakeScalar(2), "b": FakeScalar(True), "c": FakeScalar(math.nan)})
    assert out == {"a": 2, "b": True, "c": None}
    assert type(out["b"]) is bool
    assert prediction_value(FakeScalar("ok")) == "ok"
    assert probabilities_value(FakeArray([0.25, 0.75])) == [0.25, 0.75]


@pytest.mark.parametrize(
    "features",
    [None, [1, 2], "text", {1: 2.0}, {"a": object()}, {"a": [1, 2]}, {"a": {"b": 1}}],
)
def test_bad_features_are_invalid(features: Any) -> None:
    with pytest.raises(InvalidValue):
        features_value(features)


def test_too_many_features_are_invalid() -> None:
    with pytest.raises(InvalidValue):
        features_value({f"f{i}": i for i in range(MAX_FEATURES + 1)})


@pytest.mark.parametrize("prediction", [None, math.nan, math.inf, object(), [1], {"a": 1}])
def test_bad_predictions_are_invalid(prediction: Any) -> None:
    with pytest.raises(InvalidValue):
        prediction_value(prediction)


def test_probabilities() -> None:
    assert probabilities_value(None) is None
    assert probabilities_value({"ok": 0.9, "fail": 0.1}) == {"ok": 0.9, "fail": 0.1}
    assert probabilities_value({0: 0.9, 1: 0.1}) == {"0": 0.9, "1": 0.1}
    assert probabilities_value((0.5, 0.5)) == [0.5, 0.5]
    for bad in ("x", [math.nan], {"a": "b"}, {None: 0.1}, 3.0):
        with pytest.raises(InvalidValue):
            probabilities_value(bad)


def test_probabilities_are_rounded_to_6_decimals() -> None:
    third = 1 / 3
    assert probabilities_value({"a": third, "b": 1 - third}) == {"a": 0.333333, "b": 0.666667}
    assert probabilities_value(FakeArray([third, 2e-9])) == [0.333333, 0.0]
    assert probabilities_value([1, 0]) == [1, 0]
    assert repr(probabilities_value([0.1 + 0.2])[0]) == "0.3"  # type: ignore[index]


def test_build_record_shape() -> None:
    rec = build_record("r1", "q1", TS, {"a": 1}, "ok", [0.1, 0.9], 1.5)
    assert rec == {
        "id": "r1",
        "ts": TS,
        "request_id": "q1",
        "features": {"a": 1},
        "prediction": "ok",
        "probabilities": [0.1, 0.9],
        "latency_ms": 1.5,
    }
    assert list(rec)[:2] == ["id", "ts"]  # the spool's ts scan relies on this order
    with pytest.raises(InvalidValue):
        build_record("r1", "q1", TS, {"a": 1}, "ok", None, "slow")


def test_build_record_sends_the_request_id_only_when_it_differs() -> None:
    rec = build_record("r1", "r1", TS, {"a": 1}, "ok", None, None)
    assert "request_id" not in rec
    assert list(rec) == ["id", "ts", "features", "prediction", "probabilities", "latency_ms"]


def test_build_record_rounds_latency_but_never_features() -> None:
    features = {"x": 0.123456789012345, "y": 1 / 3}
    rec = build_record("r1", "q1", TS, features, 0.987654321, None, 1.23456789)
    assert rec["latency_ms"] == 1.235
    assert rec["features"] == features  # the user's data, as given
    assert rec["prediction"] == 0.987654321  # a prediction is data too


def test_build_label_shape() -> None:
    assert build_label("q1", "fail", TS) == {"request_id": "q1", "label": "fail", "ts": TS}
    with pytest.raises(InvalidValue):
        build_label("q1", None, TS)
